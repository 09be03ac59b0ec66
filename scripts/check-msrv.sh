#!/usr/bin/env bash
# Checks the declared minimum Rust version (workspace `rust-version`, Cargo.toml) against the
# locked dependency graph: it fails when a workspace crate declares none, or one below the
# highest `rust-version` of any locked dependency (a build with the declared toolchain could not
# compile them). Run by scripts/test.sh; `cargo +<msrv>` is not needed (nor available here).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

meta="$(mktemp)"
trap 'rm -f "$meta"' EXIT
# Every platform's packages: the declared MSRV holds for every target, not just this one.
cargo metadata --quiet --format-version 1 --locked >"$meta" || die "cargo metadata --locked failed"

python3 - "$meta" <<'EOF'
import json
import sys


def version(text):
    return tuple(int(part) for part in text.split("."))


def show(v):
    return ".".join(str(part) for part in v)


meta = json.load(open(sys.argv[1]))
members = set(meta["workspace_members"])
declared, needed = {}, {}
for package in meta["packages"]:
    rust_version = package.get("rust_version")
    if package["id"] in members:
        declared[package["name"]] = rust_version
    elif rust_version:
        needed.setdefault(version(rust_version), []).append(f'{package["name"]} {package["version"]}')

floor = max(needed) if needed else (0,)
problems = [f"{name} declares no rust-version" for name, v in sorted(declared.items()) if not v]
problems += [
    f"{name} declares rust-version {v}, below {show(floor)} that the locked dependencies need"
    for name, v in sorted(declared.items())
    if v and version(v) < floor
]
culprits = ", ".join(sorted(needed.get(floor, [])))
if problems:
    print("check-msrv: " + "; ".join(problems), file=sys.stderr)
    print(f"check-msrv: {show(floor)} is needed by {culprits}", file=sys.stderr)
    sys.exit(1)
print(
    f"check-msrv: declared {', '.join(sorted(set(declared.values())))} >= {show(floor)} "
    f"needed by the locked dependencies ({culprits})",
    file=sys.stderr,
)
EOF
