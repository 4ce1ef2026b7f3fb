"""Maintainer script: extract the Terraform provider schemas the module uses from the cdktf prebuilt
provider packages on npm, pruned to the resource and data-source types terraform/ declares.

    python3 tools/tfstub/extract.py            # rewrite tools/tfstub/schemas/*.json
    python3 tools/tfstub/extract.py --check    # exit 1 if a schema file would change

Run it again whenever the provider pin in terraform/versions.tf changes (bump PACKAGES below to the cdktf
release generated from that provider version; its package.json records the version, and this script
copies it into each schema file) or the module starts using a new resource or data-source type
(tests/deploy/test_terraform_plan.py fails until then).

Why these packages: the provider binaries come only from the Terraform registry, which our machines cannot
reach, but `@cdktf/provider-google` (and -google-beta, -archive, -time) are generated from the providers'
schemas and are on the npm registry. Each resource's compiled module carries, in its inline source map,
the generated TypeScript, which states for every attribute `computed / optional / required`, how it is
written in HCL (attribute or block, list / set / map / single) and its element type, and the
description (with the "Possible values" of enums). This script reads those and writes JSON in the shape
of `terraform providers schema -json`, plus each attribute's possible values. Needs only Python 3.11
and `npm` (for `npm pack`; nothing is installed).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
OUT_DIR = Path(__file__).resolve().parent / "schemas"

# provider local name -> (npm package, version). The package.json of each records the provider version.
PACKAGES = {
    "google": ("@cdktf/provider-google", "16.12.1"),
    "google-beta": ("@cdktf/provider-google-beta", "16.12.1"),
    "archive": ("@cdktf/provider-archive", "11.0.1"),
    # time_sleep: the waits for IAM and log-based-metric propagation (terraform/iam.tf, monitoring.tf).
    "time": ("@cdktf/provider-time", "11.0.1"),
}
# Resource-type prefix of each provider (google-beta serves google_* types too).
TYPE_PREFIX = {"google": "google", "google-beta": "google", "archive": "archive", "time": "time"}

FLAGS = re.compile(r"^\s*// (\w+) - computed: (true|false), optional: (true|false), required: (true|false)\s*$")
HCL_ENTRY = re.compile(
    r"^\s*(\w+): \{\n\s*value: [^\n]*\n\s*isBlock: (true|false),\n\s*type: \"(\w+)\",\n"
    r"\s*storageClassType: \"(\w+)\",", re.M)
POSSIBLE = re.compile(r"Possible values: \[([^\]]*)\]")

PRIMITIVE_STORAGE = {
    "string": "string", "number": "number", "boolean": "bool",
    "stringList": ["list", "string"], "numberList": ["list", "number"], "booleanList": ["list", "bool"],
    "stringMap": ["map", "string"], "numberMap": ["map", "number"], "booleanMap": ["map", "bool"],
    "stringListList": ["list", ["list", "string"]], "numberListList": ["list", ["list", "number"]],
    "stringMapList": ["list", ["map", "string"]], "numberMapList": ["list", ["map", "number"]],
    "booleanMapList": ["list", ["map", "bool"]],
}
GETTERS = {
    "getStringAttribute": "string", "getNumberAttribute": "number", "getBooleanAttribute": "bool",
    "getListAttribute": ["list", "string"], "getNumberListAttribute": ["list", "number"],
    "getStringMapAttribute": ["map", "string"], "getNumberMapAttribute": ["map", "number"],
    "getBooleanMapAttribute": ["map", "bool"], "getAnyMapAttribute": ["map", "dynamic"],
    "interpolationForAttribute": "dynamic",
}
COMPLEX_COMPUTED = {  # cdktf helper classes of computed collections
    "cdktf.StringMap": ["map", "string"], "cdktf.NumberMap": ["map", "number"],
    "cdktf.BooleanMap": ["map", "bool"], "cdktf.AnyMap": ["map", "dynamic"],
    "cdktf.StringMapList": ["list", ["map", "string"]], "cdktf.NumberMapList": ["list", ["map", "number"]],
    "cdktf.BooleanMapList": ["list", ["map", "bool"]], "cdktf.AnyMapList": ["list", ["map", "dynamic"]],
    "cdktf.StringListList": ["list", ["list", "string"]], "cdktf.NumberListList": ["list", ["list", "number"]],
}


class Source:
    """The generated TypeScript of one resource, data source or provider."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines()

    def _body(self, header: re.Pattern) -> str | None:
        m = header.search(self.text)
        if not m:
            return None
        start = m.end()
        end = self.text.find("\n}\n", start)
        return self.text[start:end if end >= 0 else len(self.text)]

    def class_body(self, name: str) -> str | None:
        return self._body(re.compile(rf"^export class {name} extends [\w.]+ \{{\n", re.M))

    def resource_class(self) -> tuple[str, str]:
        m = re.search(r"^export class (\w+) extends cdktf\.(TerraformResource|TerraformDataSource|TerraformProvider)"
                      r" \{\n", self.text, re.M)
        assert m, "no resource, data source or provider class"
        return m.group(1), self.class_body(m.group(1))

    def interface_body(self, name: str) -> str | None:
        return self._body(re.compile(rf"^export interface {name}( extends [\w.]+)? \{{\n", re.M))

    def hcl_entries(self, struct: str | None, class_body: str | None) -> dict[str, tuple[bool, str, str]]:
        """name -> (is_block, type, storageClassType) of the configurable fields."""
        if struct is None:
            m = re.search(r"protected synthesizeHclAttributes\(\)[^\n]*\{\n(.*?)\n  \}(?:\n|$)", class_body or "", re.S)
            body = m.group(1) if m else ""
        else:
            fn = struct[0].lower() + struct[1:] + "ToHclTerraform"
            body = self._body(re.compile(rf"^export function {fn}\(.*\n", re.M)) or ""
        return {n: (b == "true", t, s) for n, b, t, s in HCL_ENTRY.findall(body)}

    def docs(self, interface: str) -> dict[str, dict]:
        """snake name -> {"description", "optional_in_interface", "ts_type"} from an interface's members."""
        body = self.interface_body(interface) or ""
        out = {}
        for m in re.finditer(r"/\*\*\n(.*?)\*/\n\s*readonly (\w+)(\??): ([^;]+);", body, re.S):
            doc, ts_type = m.group(1), m.group(4)
            link = re.search(r"#(\w+) \w+#\w+\}", doc)
            if not link:
                continue
            text = " ".join(line.strip().lstrip("*").strip() for line in doc.splitlines())
            text = re.sub(r"\s*Docs at Terraform Registry: \{@link [^}]*\}", "", text).strip()
            out[link.group(1)] = {"description": text, "optional": m.group(3) == "?", "ts_type": ts_type.strip()}
        return out


def _flag_segments(body: str) -> dict[str, tuple[dict, str]]:
    """From a class body: name -> ({computed, optional, required}, the code up to the next attribute)."""
    out, current, buf = {}, None, []
    for line in body.splitlines():
        m = FLAGS.match(line)
        if m:
            if current:
                out[current[0]] = (current[1], "\n".join(buf))
            current = (m.group(1), {"computed": m.group(2) == "true", "optional": m.group(3) == "true",
                                    "required": m.group(4) == "true"})
            buf = []
        elif current:
            buf.append(line)
    if current:
        out[current[0]] = (current[1], "\n".join(buf))
    return out


def _enum(description: str) -> list[str] | None:
    m = POSSIBLE.search(description or "")
    if not m:
        return None
    values = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    return [v for v in values if v] or None


def _object_type(block: dict) -> list:
    attrs = {n: a["type"] for n, a in block.get("attributes", {}).items()}
    for n, bt in block.get("block_types", {}).items():
        inner = _object_type(bt["block"])
        attrs[n] = inner if bt["nesting_mode"] == "single" else [bt["nesting_mode"], inner]
    return ["object", attrs]


def build_block(src: Source, struct: str | None) -> dict:
    """Schema block of the resource (struct None) or of the nested struct `struct`."""
    is_provider = False
    if struct is None:
        class_name, body = src.resource_class()
        interface = class_name + "Config"
        is_provider = bool(re.search(rf"class {class_name} extends cdktf\.TerraformProvider", src.text))
    else:
        body = src.class_body(struct + "OutputReference")
        interface = struct
    hcl = src.hcl_entries(struct, body)
    docs = src.docs(interface)
    segments = _flag_segments(body or "")
    if not segments:  # provider-side structs have no class: the interface says what is optional
        segments = {name: ({"computed": False, "optional": d["optional"], "required": not d["optional"]}, "")
                    for name, d in docs.items() if name in hcl}
    block: dict = {"attributes": {}, "block_types": {}}
    for name, (flags, code) in sorted(segments.items()):
        if is_provider and name == "alias":
            continue  # cdktf's own meta-argument, not a provider attribute
        doc = docs.get(name, {})
        nested = re.search(r"new (\w+?)(List|OutputReference|Map)\(this, \"" + name + r"\"(?:, (true|false))?\)", code)
        entry = hcl.get(name)
        if entry and entry[0]:  # a block
            is_block, hcl_type, storage = entry
            inner_struct = nested.group(1) if nested else re.sub(r"(List|OutputReference)$", "", storage)
            inner = build_block(src, inner_struct)
            if hcl_type == "struct":
                mode, max_items = "single", None
            else:
                mode = "set" if hcl_type == "set" else "list"
                single = nested is not None and nested.group(2) == "OutputReference"
                single = single or not re.search(r"\[\]", doc.get("ts_type", "[]"))
                max_items = 1 if single else None
            bt = {"nesting_mode": mode, "block": inner}
            if flags["required"] and mode != "single":
                bt["min_items"] = 1
            if max_items:
                bt["max_items"] = max_items
            if doc.get("description"):
                bt["block"]["description"] = doc["description"]
            block["block_types"][name] = bt
            continue
        if entry:  # a configurable attribute
            _, hcl_type, storage = entry
            if storage in PRIMITIVE_STORAGE:
                typ = PRIMITIVE_STORAGE[storage]
                if hcl_type == "set" and isinstance(typ, list) and typ[0] == "list":
                    typ = ["set", typ[1]]
            elif nested:  # attribute holding objects (ConfigModeAttr / nested attributes)
                obj = _object_type(build_block(src, nested.group(1)))
                typ = obj if nested.group(2) == "OutputReference" else [
                    "set" if hcl_type == "set" else ("map" if hcl_type == "map" else "list"), obj]
            else:
                typ = "dynamic"
        else:  # computed only
            typ = _computed_type(src, name, code, nested)
        attr = {"type": typ}
        for key in ("required", "optional", "computed"):
            if flags[key]:
                attr[key] = True
        if not (flags["required"] or flags["optional"] or flags["computed"]):
            attr["optional"] = True
        if doc.get("description"):
            attr["description"] = doc["description"]
            values = _enum(doc["description"])
            if values and typ == "string":
                attr["possible_values"] = values
        block["attributes"][name] = attr
    return block


def _computed_type(src: Source, name: str, code: str, nested) -> object:
    m = re.search(r"new (cdktf\.\w+)\(this, \"" + name + r"\"\)", code)
    if m and m.group(1) in COMPLEX_COMPUTED:
        return COMPLEX_COMPUTED[m.group(1)]
    if nested:
        obj = _object_type(build_block(src, nested.group(1)))
        kind = nested.group(2)
        if kind == "Map":
            return ["map", obj]
        if kind == "OutputReference":
            return ["list", obj]
        return ["set" if nested.group(3) == "true" else "list", obj]
    m = re.search(r"this\.(\w+)\('" + name + r"'\)", code)
    if m and m.group(1) in GETTERS:
        typ = GETTERS[m.group(1)]
        if "Fn.tolist(" in code and isinstance(typ, list) and typ[0] == "list":
            typ = ["set", typ[1]]
        return typ
    return "dynamic"


def ts_source(js: str) -> str:
    m = re.search(r"sourceMappingURL=data:application/json;base64,(\S+)", js)
    assert m, "compiled module without an inline source map"
    return json.loads(base64.b64decode(m.group(1)))["sourcesContent"][0]


def types_used(tf_dir: Path = TF_DIR, provider: str | None = None) -> dict[str, set[str]]:
    """{"resource": {...}, "data": {...}}: every type declared in terraform/ (examples included); with
    provider, only the blocks that name it (`provider = google-beta`)."""
    used: dict[str, set[str]] = {"resource": set(), "data": set()}
    for path in tf_dir.rglob("*.tf"):
        if ".terraform" in path.parts:
            continue
        text = path.read_text()
        # A block ends at the first "}" indented as its header is.
        for m in re.finditer(r'^([ \t]*)(resource|data)\s+"(\w+)"[^\n]*\{\n(.*?)^\1\}', text, re.M | re.S):
            if provider is None or re.search(rf"^\s*provider\s*=\s*{re.escape(provider)}\b", m.group(4), re.M):
                used[m.group(2)].add(m.group(3))
    return used


def module_dirs(kind: str, rtype: str, prefix: str) -> list[str]:
    """Where cdktf puts a type's module: data sources under data-<type>; resources under the type without
    the provider's prefix when the provider's name is that prefix (google, archive, time), else the whole type
    (google-beta)."""
    if kind == "data":
        return ["data-" + rtype.replace("_", "-")]
    return [rtype.removeprefix(prefix + "_").replace("_", "-"), rtype.replace("_", "-")]


def extract(local_name: str, tarball: Path, used: dict[str, set[str]]) -> dict:
    prefix = TYPE_PREFIX[local_name]
    wanted = {}
    for kind in ("resource", "data"):
        for rtype in used[kind]:
            if rtype.startswith(prefix + "_"):
                for directory in module_dirs(kind, rtype, prefix):
                    wanted[f"package/lib/{directory}/index.js"] = (kind, rtype)
    wanted["package/lib/provider/index.js"] = ("provider", None)
    wanted["package/package.json"] = ("package", None)
    found: dict[str, str] = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            if member.name in wanted:
                found[member.name] = tar.extractfile(member).read().decode()
    package = json.loads(found.pop("package/package.json"))
    out = {
        "source": package["cdktf"]["provider"]["name"],
        "version": package["cdktf"]["provider"]["version"],
        "package": f"{package['name']}@{package['version']}",
        "provider": {"version": 0, "block": build_block(Source(ts_source(found["package/lib/provider/index.js"])),
                                                        None)},
        "resource_schemas": {},
        "data_source_schemas": {},
    }
    for member, (kind, rtype) in sorted(wanted.items()):
        if kind not in ("resource", "data") or member not in found:
            continue  # a type this provider does not have (e.g. beta-only) stays out
        js = found[member]
        if f'.tfResourceType = "{rtype}";' not in js:
            continue  # another type's module that happens to have this name
        schema = {"version": 0, "block": build_block(Source(ts_source(js)), None)}
        out["resource_schemas" if kind == "resource" else "data_source_schemas"][rtype] = schema
    return out


def npm_pack(package: str, version: str, dest: Path) -> Path:
    result = subprocess.run(["npm", "pack", f"{package}@{version}", "--silent", "--pack-destination", str(dest)],
                            check=True, capture_output=True, text=True)
    return dest / result.stdout.strip().splitlines()[-1]


def render(schema: dict) -> str:
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a schema file is out of date")
    parser.add_argument("--tarballs", type=Path, help="a folder already holding the npm pack tarballs")
    args = parser.parse_args(argv)
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for local_name, (package, version) in PACKAGES.items():
            tarball = None
            if args.tarballs:
                name = package.lstrip("@").replace("/", "-") + f"-{version}.tgz"
                tarball = args.tarballs / name if (args.tarballs / name).exists() else None
            tarball = tarball or npm_pack(package, version, Path(tmp))
            # google-beta serves only the blocks that ask for it; the others serve every type they have.
            used = types_used(provider=local_name if local_name == "google-beta" else None)
            text = render(extract(local_name, tarball, used))
            path = OUT_DIR / f"{local_name}.json"
            if path.exists() and path.read_text() == text:
                continue
            stale.append(path.name)
            if not args.check:
                OUT_DIR.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    verb = "out of date" if args.check else "written"
    print(f"{verb}: {', '.join(stale)}" if stale else "schemas are up to date")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
