"""Write examples/runs_10M.tsv and runs_30M.tsv: illustrative DDO sweeps at two scales
(Algorithm 1's design, 2 seeds each).

The losses come from a stated separable world plus seed noise, so the worked example of docs/cli.md
can be checked against a known answer; they are not measurements of any model.
"""

from pathlib import Path

import numpy as np

DOMAINS = ["web", "wiki", "code", "books"]
A = np.array([60.0, 25.0, 40.0, 15.0])
B = np.array([0.30, 0.22, 0.28, 0.20])


def write_sweep(path: Path, total: float, rng: np.random.Generator) -> None:
    base = np.full(4, total / 4)  # uniform base run
    lines = ["run\tseed\t" + "\t".join(f"tokens.{d}" for d in DOMAINS) + "\tloss.web\tloss.wiki"]
    runs = [("base", base)]
    for j, d in enumerate(DOMAINS):
        for f, tag in ((3.0, "x3"), (1 / 3, "div3")):
            n = base.copy()
            n[j] *= f
            runs.append((f"{d}_{tag}", n))
    for name, n in runs:
        for seed in (0, 1):
            total = 1.8 + float(np.sum(A * n**-B))
            # two evaluation domains whose mean is the objective; shared seed noise
            noise = rng.normal(0, 0.002)
            web, wiki = total + 0.1 + noise, total - 0.1 + noise
            tok = "\t".join(str(round(x)) for x in n)
            lines.append(f"{name}_s{seed}\t{seed}\t{tok}\t{web:.5f}\t{wiki:.5f}")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    rng = np.random.default_rng(0)
    here = Path(__file__).parent
    write_sweep(here / "runs_10M.tsv", 1e7, rng)
    write_sweep(here / "runs_30M.tsv", 3e7, rng)


if __name__ == "__main__":
    main()
