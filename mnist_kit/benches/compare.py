"""The kit against its peers, back to back on one machine, recorded as JSON; and the README's
speed blocks rendered from those records, so no speed figure in the README is typed by hand.

usage (from the repository root, with the Python that has the peers' frameworks):
  python mnist_kit/benches/compare.py bench RAW_DIR [--rounds 3]   # -> results/speed/bench.json
  python mnist_kit/benches/compare.py speedrun [--seeds 10]        # -> results/speed/speedrun.json
  python mnist_kit/benches/compare.py serve                        # -> results/speed/serve.json
  python mnist_kit/benches/compare.py render                       # -> README.md's blocks

RAW_DIR holds the four uncompressed IDX files (gunzip data/mnist/*.gz). `bench` runs, in each
round, every model at one thread then two: the kit (`mnist-kit bench --json`), then PyTorch
(`../shared/peers/pytorch_bench.py`), then JAX where it is installed and has the model
(`jax_bench.py`, pinned with taskset). Build the kit first: `cargo build --release`.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KIT = os.path.join(ROOT, "target", "release", "mnist-kit")
SPEED = os.path.join(ROOT, "results", "speed")
# The kit's model name, the peers' name for the same network, and how the README names it.
MODELS = [
    ("lenet5", "lenet", "LeNet-5"),
    ("resnet", "resnet", "ResNet"),
    ("mlp-61k", "mlp", "MLP-61k"),
    ("mlp-500-150", "mlp500", "mlp-500-150"),
]
JAX_MODELS = {"lenet5": "lenet", "mlp-61k": "mlp"}


def sh(cmd, env=None, cwd=ROOT):
    e = dict(os.environ)
    e.update(env or {})
    print("$", " ".join(f"{k}={v}" for k, v in (env or {}).items()), " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, env=e, cwd=cwd, check=True, capture_output=True, text=True)
    return out.stdout


def result_line(text):
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"no RESULT line in:\n{text}")


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return dict(cpu=cpu, logical_cpus=os.cpu_count(), commit=commit,
                date=datetime.date.today().isoformat())


def save(name, record):
    os.makedirs(SPEED, exist_ok=True)
    path = os.path.join(SPEED, name)
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print("wrote", path, file=sys.stderr)


def bench(args):
    peers = os.path.abspath(args.peers)
    try:
        import jax  # noqa: F401
        has_jax = True
    except ImportError:
        has_jax = False
    runs = []
    for r in range(args.rounds):
        for threads in (1, 2):
            for kit_name, peer_name, _ in MODELS:
                kit = json.loads(sh([KIT, "bench", "--model", kit_name, "--batch-size", "64",
                                     "--batches", "300", "--json"],
                                    env={"RAYON_NUM_THREADS": str(threads)}))
                runs.append(dict(round=r, threads=threads, model=kit_name, framework="mnist_kit",
                                 train_ips=kit["train_images_per_sec"],
                                 infer_ips=kit["infer_images_per_sec"],
                                 peak_rss_mb=kit["peak_rss_mb"], isa=kit["cpu"]["isa"]))
                torch = result_line(sh([sys.executable, os.path.join(peers, "pytorch_bench.py"),
                                        peer_name, args.raw], env={"THREADS": str(threads)}))
                runs.append(dict(round=r, threads=threads, model=kit_name, framework="pytorch",
                                 train_ips=torch["train_ips"], infer_ips=torch["infer_ips"],
                                 version=torch["version"]))
                if has_jax and kit_name in JAX_MODELS:
                    cores = "0" if threads == 1 else "0,1"
                    jx = result_line(sh(["taskset", "-c", cores, sys.executable,
                                         os.path.join(peers, "jax_bench.py"),
                                         JAX_MODELS[kit_name], args.raw]))
                    runs.append(dict(round=r, threads=threads, model=kit_name, framework="jax",
                                     train_ips=jx.get("train_ips"), infer_ips=jx.get("infer_ips"),
                                     version=jx.get("version")))
    save("bench.json", dict(machine=machine(), rounds=args.rounds, batch_size=64, runs=runs))


def speedrun(args):
    kit = json.loads(sh([KIT, "speedrun", "--seeds", str(args.seeds), "--json"],
                        env={"RAYON_NUM_THREADS": "2"}))
    peer = json.loads(sh([sys.executable, os.path.join(ROOT, "mnist_kit", "benches", "peers",
                                                         "speedrun.py"),
                          os.path.join(ROOT, "data", "mnist"), str(args.seeds)],
                         env={"THREADS": "2"}))
    save("speedrun.json", dict(machine=machine(), kit=kit, pytorch=peer))


def serve(args):
    out = sh(["cargo", "bench", "-q", "--bench", "serve"])
    rows = [json.loads(l[len("JSON "):]) for l in out.splitlines() if l.startswith("JSON ")]
    if not rows:
        raise SystemExit(f"no JSON line from the serve bench:\n{out}")
    save("serve.json", dict(machine=machine(), scenarios=rows))


# ---------------------------------------------------------------------------------------------
# Rendering


def fmt_int(x):
    return f"{x:,.0f}"


def ratio_range(values):
    lo, hi = min(values), max(values)
    return f"{lo:.2f}-{hi:.2f}x" if f"{lo:.2f}" != f"{hi:.2f}" else f"{lo:.2f}x"


def where(record):
    m = record["machine"]
    return f"{m['cpu']}, {m['logical_cpus']} logical CPUs, commit {m['commit']}, {m['date']}"


def render_bench(rec):
    runs = rec["runs"]
    pick = lambda fw, model, t, r=None: [x for x in runs if x["framework"] == fw and
                                        x["model"] == model and x["threads"] == t and
                                        (r is None or x["round"] == r)]
    rounds = sorted({x["round"] for x in runs})
    torch_v = next((x["version"] for x in runs if x["framework"] == "pytorch"), "?")
    isa = next((x["isa"] for x in runs if x["framework"] == "mnist_kit"), "?")
    lines = [
        f"Recorded by `compare.py bench` on {where(rec)} (kit kernels: {isa}; PyTorch {torch_v}), "
        f"{len(rounds)} interleaved rounds, batch {rec['batch_size']}, Adam. Rates are images/s, "
        "the medians of the rounds; ratios are kit/PyTorch, each round's own, lowest to highest "
        "(bold where the kit is slower in some round):",
        "",
        "| model, threads | mnist_kit train | PyTorch train | ratio | mnist_kit infer "
        "| PyTorch infer | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rss, two_vs_one = [], []
    for threads in (1, 2):
        for kit_name, _, label in MODELS:
            kit, torch = pick("mnist_kit", kit_name, threads), pick("pytorch", kit_name, threads)
            if not kit or not torch:
                continue
            cells = [f"{label}, {threads}"]
            for key in ("train_ips", "infer_ips"):
                ratios = [pick("mnist_kit", kit_name, threads, r)[0][key] /
                          pick("pytorch", kit_name, threads, r)[0][key] for r in rounds
                          if pick("mnist_kit", kit_name, threads, r) and
                          pick("pytorch", kit_name, threads, r)]
                text = ratio_range(ratios)
                if min(ratios) < 1:
                    text = f"**{text}**"
                cells += [fmt_int(statistics.median(x[key] for x in kit)),
                          fmt_int(statistics.median(x[key] for x in torch)), text]
            lines.append("| " + " | ".join(cells) + " |")
            if threads == 1:
                lo, hi = (f"{f(x['peak_rss_mb'] for x in kit):.0f}" for f in (min, max))
                rss.append(f"{label} {lo if lo == hi else f'{lo}-{hi}'} MB")
                per_round = [pick("mnist_kit", kit_name, 2, r)[0]["train_ips"] /
                             pick("mnist_kit", kit_name, 1, r)[0]["train_ips"] for r in rounds
                             if pick("mnist_kit", kit_name, 2, r) and
                             pick("mnist_kit", kit_name, 1, r)]
                if per_round:
                    two_vs_one.append(f"{label} {ratio_range(per_round)}")
    lines.append("")
    jax = [x for x in runs if x["framework"] == "jax" and x.get("train_ips")]
    if jax:
        parts = []
        for kit_name in JAX_MODELS:
            for threads in (1, 2):
                j = [x for x in jax if x["model"] == kit_name and x["threads"] == threads]
                if not j:
                    continue
                ratios = [pick("mnist_kit", kit_name, threads, x["round"])[0]["train_ips"] /
                          x["train_ips"] for x in j]
                parts.append(f"{kit_name} at {threads} thread{'s' if threads > 1 else ''} "
                             f"{fmt_int(statistics.median(x['train_ips'] for x in j))} images/s "
                             f"(kit/JAX {ratio_range(ratios)})")
        lines.append(f"JAX ({jax[0].get('version', '')}; jit, pinned with `taskset`), training: "
                     + "; ".join(parts) + ".")
    else:
        lines.append("JAX was not installed for this record.")
    lines.append("Two threads against one (kit training, per round): " + ", ".join(two_vs_one)
                 + ". Peak RSS while training: " + ", ".join(rss) + ".")
    lines += ["", goals(rec)]
    return "\n".join(lines) + "\n"


# The speed issue's goals: (what, framework compared with, kit model, threads, key, least ratio
# in every round). Two threads against one is kit against kit.
GOALS = (
    [(f"training {label} >= {need}x PyTorch at {t} thread{'s' if t > 1 else ''}", "pytorch",
      m, t, "train_ips", need)
     for m, _, label in MODELS for t in (1, 2)
     for need in [2.0 if (m, t) == ("lenet5", 1) else 1.5]]
    + [(f"inference {label} >= 1.2x PyTorch at {t} thread{'s' if t > 1 else ''}", "pytorch",
        m, t, "infer_ips", 1.2) for m, _, label in MODELS for t in (1, 2)]
    + [(f"training MLP-61k >= 1.2x JAX at {t} thread{'s' if t > 1 else ''}", "jax", "mlp-61k",
        t, "train_ips", 1.2) for t in (1, 2)]
    + [(f"two threads >= {need}x one, {label}", "self", m, 2, "train_ips", need)
       for m, _, label in MODELS for need in [1.6 if m in ("lenet5", "resnet") else 1.0]]
)


def goals(rec):
    """Which of the speed goals every round of the record meets, and which it misses."""
    runs = rec["runs"]
    rounds = sorted({x["round"] for x in runs})

    def rate(fw, model, t, r, key):
        hit = [x for x in runs if x["framework"] == fw and x["model"] == model and
               x["threads"] == t and x["round"] == r and x.get(key)]
        return hit[0][key] if hit else None

    met, missed = [], []
    for what, peer, model, t, key, need in GOALS:
        ratios = []
        for r in rounds:
            kit = rate("mnist_kit", model, t, r, key)
            other = rate("mnist_kit", model, 1, r, key) if peer == "self" else \
                rate(peer, model, t, r, key)
            if kit and other:
                ratios.append(kit / other)
        if not ratios:
            continue
        (met if min(ratios) >= need else missed).append(
            f"{what} ({ratio_range(ratios)})")
    rss = [x["peak_rss_mb"] for x in runs if x["framework"] == "mnist_kit" and
           x.get("peak_rss_mb")]
    if rss:
        (met if max(rss) <= 400 else missed).append(
            f"peak RSS <= 400 MB (at most {max(rss):.0f} MB)")
    return ("Goals of the speed issue, judged on every round: **missed**: "
            + ("; ".join(missed) or "none") + ". Met: " + ("; ".join(met) or "none") + ".")


def render_speedrun(rec):
    k, p = rec["kit"], rec["pytorch"]
    pct = lambda x: f"{100 * x:.2f} %"
    return (
        f"Recorded by `compare.py speedrun` on {where(rec)}, two threads: the kit "
        f"{pct(k['mean_test_accuracy'])} mean test accuracy over {len(k['seeds'])} seeds "
        f"({100 * min(k['per_seed']):.2f}-{pct(max(k['per_seed']))}), median "
        f"**{k['seconds_per_run']:.1f} s** per run ({k['train_seconds_per_run']:.1f} s of it "
        f"training); PyTorch ({p.get('peer', 'pytorch')}, right after) "
        f"{pct(p['mean_test_accuracy'])}, median **{p['seconds_per_run']:.1f} s** per run "
        f"({p['train_seconds_per_run']:.1f} s training): the kit takes "
        f"{k['seconds_per_run'] / p['seconds_per_run']:.2f}x PyTorch's time.\n"
    )


def render_serve(rec):
    lines = [
        f"Recorded by `compare.py serve` (`cargo bench --bench serve`) on {where(rec)}, model "
        f"`{os.path.relpath(os.path.normpath(rec['scenarios'][0].get('model', '?')), ROOT)}`:",
        "",
        "| requests | clients | connections | p50 ms | p90 ms | p99 ms | requests/s | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in rec["scenarios"]:
        lines.append(f"| `{s['path']}` | {s['clients']} | "
                     f"{'keep-alive' if s['keep_alive'] else 'one per request'} | "
                     f"{s['p50_ms']:.1f} | {s['p90_ms']:.1f} | {s['p99_ms']:.1f} | "
                     f"{s['requests_per_sec']:.0f} | {s['errors']} |")
    return "\n".join(lines) + "\n"


def replace_block(text, name, content):
    begin, end = f"<!-- generated:{name} -->", "<!-- /generated -->"
    start = text.index(begin) + len(begin)
    stop = start + text[start:].index(end)
    return text[:start] + "\n" + content.rstrip("\n") + "\n" + text[stop:]


def render(args):
    path = os.path.join(ROOT, "README.md")
    text = open(path).read()
    for name, fn in (("speed", render_bench), ("speedrun", render_speedrun),
                     ("serve", render_serve)):
        src = os.path.join(SPEED, f"{'bench' if name == 'speed' else name}.json")
        if not os.path.exists(src) or f"<!-- generated:{name} -->" not in text:
            print("skipped", name, file=sys.stderr)
            continue
        text = replace_block(text, name, fn(json.load(open(src))))
    open(path, "w").write(text)
    print("rendered", path, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("raw")
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--peers", default=os.path.join(ROOT, "..", "shared", "peers"))
    s = sub.add_parser("speedrun")
    s.add_argument("--seeds", type=int, default=10)
    sub.add_parser("serve")
    sub.add_parser("render")
    args = ap.parse_args()
    {"bench": bench, "speedrun": speedrun, "serve": serve, "render": render}[args.cmd](args)


if __name__ == "__main__":
    main()
