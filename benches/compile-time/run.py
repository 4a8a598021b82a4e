#!/usr/bin/env python3
"""Compile time of a generated service: 100 commands and 100 handlers in one crate.

Generates three crates under target/compile-bench/ (outside the workspace), each with the same
100 modules:

  plain  a struct and a plain `async fn` per module (the baseline: what the code costs by itself)
  catga  `#[command(output = u64)]` + `#[handler]` per module, and a `build()` of the app
  local  the same with `#[command(output = u64, local)]` (never crosses a process)

and times, for each, as a ratio to `plain` measured in the same round (the kinds are built
one after the other in every round, so a slow moment of a shared machine does not land on one
kind only):

  release, crate only        dependencies built, the crate itself rebuilt from scratch
  release, touch one handler one module's file edited, then rebuilt
  debug, crate only
  debug, touch one handler   (incremental)

It also counts the LLVM IR functions of each crate in release (`--emit=llvm-ir`, `define` lines:
the count `cargo llvm-lines` reports, without needing it installed).

Usage: python3 benches/compile-time/run.py [--handlers N] [--runs R]
Runs R rounds (default 3) and reports the median time and the median of the rounds' ratios.
Takes a few minutes.
"""

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORK = ROOT / "target" / "compile-bench"
SENDS = False

CARGO = """[package]
name = "bench_{kind}"
version = "0.0.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
{deps}

[profile.release]
debug = false
"""

DEPS = {
    "plain": 'serde = { version = "1", features = ["derive"] }\nthiserror = "2"',
    "catga": 'catga-core = { path = "%s" }\nserde = { version = "1", features = ["derive"] }\nthiserror = "2"',
}

PLAIN_MODULE = """use serde::{{Deserialize, Serialize}};
use crate::Failed;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command{i} {{
    pub id: u64,
    pub name: String,
}}

pub async fn handle{i}(cmd: Command{i}) -> Result<u64, Failed> {{
    Ok(cmd.id + cmd.name.len() as u64 + {i})
}}
"""

CATGA_MODULE = """use catga_core::prelude::*;
use crate::Failed;

#[command(output = u64{local})]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command{i} {{
    pub id: u64,
    pub name: String,
}}

#[handler]
pub async fn handle{i}(cmd: Command{i}) -> Result<u64, Failed> {{
    Ok(cmd.id + cmd.name.len() as u64 + {i})
}}
"""

ERROR = """
/// The service's one error type, shared by every handler (as a service's usually is).
#[derive(Debug, thiserror::Error)]
#[error("failed")]
pub struct Failed;
"""

PLAIN_LIB = ERROR + """{mods}

/// Runs every handler once, so none is dead code.
pub async fn run_all() -> u64 {{
    let mut total = 0;
{calls}
    total
}}
"""

CATGA_LIB = ERROR + """{mods}

/// Builds the application (every handler is registered and bound).
pub fn app() -> Result<catga_core::Catga, catga_core::BuildError> {{
    catga_core::Catga::builder().build()
}}
{sends}"""

CATGA_SENDS = """
/// Sends every command once (with `--sends`: each `send` instantiates the pipeline for its type).
pub async fn run_all(app: &catga_core::Catga) -> Result<u64, catga_core::Error> {{
    let mut total = 0;
{calls}
    Ok(total)
}}
"""


def generate(kind, n):
    crate = WORK / kind
    src = crate / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    deps = DEPS["plain"] if kind == "plain" else DEPS["catga"] % (ROOT / "catga-core")
    (crate / "Cargo.toml").write_text(CARGO.format(kind=kind, deps=deps))
    mods = "\n".join(f"pub mod m{i:03};" for i in range(n))
    if kind == "plain":
        for i in range(n):
            (src / f"m{i:03}.rs").write_text(PLAIN_MODULE.format(i=i))
        calls = "\n".join(
            f'    total += m{i:03}::handle{i}(m{i:03}::Command{i} {{ id: {i}, name: String::new() }}).await.unwrap_or(0);'
            for i in range(n)
        )
        (src / "lib.rs").write_text(PLAIN_LIB.format(mods=mods, calls=calls))
    else:
        local = ", local" if kind == "local" else ""
        for i in range(n):
            (src / f"m{i:03}.rs").write_text(CATGA_MODULE.format(i=i, local=local))
        calls = "\n".join(
            f'    total += app.send(m{i:03}::Command{i} {{ id: {i}, name: String::new() }}).await?;'
            for i in range(n)
        )
        sends = CATGA_SENDS.format(calls=calls) if SENDS else ""
        (src / "lib.rs").write_text(CATGA_LIB.format(mods=mods, sends=sends))
    return crate


def cargo(crate, *args, env=None):
    full_env = dict(os.environ)
    full_env["CARGO_TARGET_DIR"] = str(WORK / "target")
    full_env.pop("RUSTFLAGS", None)
    full_env.update(env or {})
    start = time.monotonic()
    subprocess.run(
        ["cargo", args[0], "--manifest-path", str(crate / "Cargo.toml"), *args[1:]],
        check=True,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - start


def touch_one(crate, kind):
    """Edits one handler's body (a real change, so nothing is reused for it)."""
    path = crate / "src" / "m050.rs"
    text = path.read_text()
    marker = "+ 50)"
    bumped = text.replace(marker, "+ 50 + 1)") if marker in text else text.replace("+ 50 + 1)", marker)
    path.write_text(bumped)


def measure(crates, runs):
    """Times every kind, interleaved: each round builds plain, catga and local one after the
    other, so a slow moment of a shared machine slows one round of every kind rather than all
    rounds of one kind. Returns {kind: {row: median seconds}} and {kind: {row: median of the
    per-round ratios to plain}}."""
    times = {kind: {} for kind in crates}
    ratios = {kind: {} for kind in crates}
    for profile, flags in (("release", ["--release"]), ("debug", [])):
        only_row, touch_row = f"{profile}, crate only", f"{profile}, touch one handler"
        for kind, crate in crates.items():
            cargo(crate, "build", *flags)  # dependencies and a first build
        rounds = []
        for _ in range(runs):
            this_round = {}
            for kind, crate in crates.items():
                cargo(crate, "clean", "-p", f"bench_{kind}", *flags)
                only = cargo(crate, "build", *flags)
                touch_one(crate, kind)
                touch = cargo(crate, "build", *flags)
                this_round[kind] = (only, touch)
            rounds.append(this_round)
        for kind in crates:
            times[kind][only_row] = statistics.median(r[kind][0] for r in rounds)
            times[kind][touch_row] = statistics.median(r[kind][1] for r in rounds)
            if "plain" in crates:
                ratios[kind][only_row] = statistics.median(
                    r[kind][0] / r["plain"][0] for r in rounds)
                ratios[kind][touch_row] = statistics.median(
                    r[kind][1] / r["plain"][1] for r in rounds)
    for kind, crate in crates.items():
        # LLVM functions of the crate itself, release.
        functions, lines = count_ir(emit_ir(kind, crate))
        times[kind]["LLVM functions (release)"] = functions
        times[kind]["LLVM IR lines (release)"] = lines
    return times, ratios


def emit_ir(kind, crate):
    """The IR rustc hands to LLVM for the crate, before LLVM optimizes it (what
    `cargo llvm-lines` counts), in release; returns the `.ll` file."""
    deps = WORK / "target" / "release" / "deps"
    for old in deps.glob(f"bench_{kind}-*.ll"):
        old.unlink()
    cargo(crate, "rustc", "--release", "--lib", "--", "--emit=llvm-ir", "-C", "codegen-units=1",
          "-C", "no-prepopulate-passes", "-C", "passes=name-anon-globals")
    return next(deps.glob(f"bench_{kind}-*.ll"))


def count_ir(ll, top=0):
    """Functions and lines of the IR file `ll`; with `top`, also the biggest groups of
    functions by name (generic arguments and hashes removed), as `cargo llvm-lines` lists."""
    functions, lines = 0, 0
    groups = {}
    current = None
    if True:
        for line in ll.read_text(errors="replace").splitlines():
            lines += 1
            if line.startswith("define "):
                functions += 1
                at = line.find("@")
                current = line[at + 1:line.find("(", at)].strip('"')
                groups.setdefault(current, [0, 0])[0] += 1
            elif current is not None:
                groups[current][1] += 1
                if line == "}":
                    current = None
    if top:
        names = list(groups)
        demangled = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                                   text=True).stdout.splitlines()
        merged = {}
        for name, pretty in zip(names, demangled):
            key = strip_generics(pretty)
            entry = merged.setdefault(key, [0, 0])
            entry[0] += groups[name][0]
            entry[1] += groups[name][1]
        for key, (count, size) in sorted(merged.items(), key=lambda kv: -kv[1][1])[:top]:
            print(f"{size:8} lines {count:5} copies  {key}")
    return functions, lines


def strip_generics(name):
    """`core::ptr::drop_in_place<Foo<u8>>::h1234` → `core::ptr::drop_in_place`."""
    out, depth = [], 0
    for ch in name:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    text = "".join(out)
    if "::h" in text:
        head, _, tail = text.rpartition("::h")
        if len(tail) == 16:
            text = head
    return text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--handlers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinds", default="plain,catga,local")
    parser.add_argument("--top", type=int, default=0,
                        help="only list the N biggest function groups of each kind's IR")
    parser.add_argument("--sends", action="store_true",
                        help="also send every command once from the catga crates")
    args = parser.parse_args()
    global SENDS
    SENDS = args.sends
    if args.top:
        for kind in args.kinds.split(","):
            crate = generate(kind, args.handlers)
            ir = emit_ir(kind, crate)
            print(f"== {kind}: {count_ir(ir)[0]} functions")
            count_ir(ir, args.top)
        return
    kinds = args.kinds.split(",")
    crates = {kind: generate(kind, args.handlers) for kind in kinds}
    print(f"measuring {', '.join(kinds)}, {args.runs} interleaved rounds …", file=sys.stderr, flush=True)
    results, ratios = measure(crates, args.runs)
    rows = list(results[kinds[0]].keys())
    print(f"| {args.handlers} handlers | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for row in rows:
        cells = []
        for kind in kinds:
            value = results[kind][row]
            if isinstance(value, float):
                ratio = ratios[kind].get(row) if kind != "plain" else None
                cells.append(f"{value:.2f} s" + (f" ({ratio:.2f}×)" if ratio else ""))
            else:
                ratio = value / results["plain"][row] if "plain" in results and results["plain"][row] else None
                cells.append(f"{value}" + (f" ({ratio:.0f}×)" if ratio and kind != "plain" else ""))
        print(f"| {row} | " + " | ".join(cells) + " |")
    print("\nTimes are medians of the rounds; a ratio is the median of each round's ratio to plain.")

if __name__ == "__main__":
    main()
