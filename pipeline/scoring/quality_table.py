"""A paper-style quality table: several models on several sets, in the layout of the SRGAN
paper's Table 2 (a group of rows per set, a column per model), as text and as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial
# Network" (CVPR 2017), Table 2: x4, PSNR (dB) / SSIM as the paper measured them (its own
# code: Y channel, border cropped); the paper gives no NIQE or LPIPS.
PAPER_SCALE = 4
PAPER_X4 = {
    "Set5": {"bicubic": (28.43, 0.8211), "SRResNet": (32.05, 0.9019), "SRGAN": (29.40, 0.8472)},
    "Set14": {"bicubic": (25.99, 0.7486), "SRResNet": (28.49, 0.8184), "SRGAN": (26.02, 0.7397)},
    "BSD100": {"bicubic": (25.94, 0.6935), "SRResNet": (27.58, 0.7620), "SRGAN": (25.16, 0.6688)},
}
PAPER_METHODS = ("bicubic", "SRResNet", "SRGAN")
PAPER_ALIASES = {"set5": "Set5", "set14": "Set14", "bsd100": "BSD100", "b100": "BSD100"}

METRICS = ("psnr_y", "ssim_y", "niqe", "lpips")
ROW_NAMES = {"psnr_y": "PSNR", "ssim_y": "SSIM", "niqe": "NIQE", "lpips": "LPIPS"}
DIGITS = {"psnr_y": 2, "ssim_y": 4, "niqe": 2, "lpips": 3}


def paper_set(name: str) -> str | None:
    """The paper's name for the set called `name` (Set5, Set14, BSD100; B100 too), or None."""
    return PAPER_ALIASES.get(name.lower())


def means(figures: list[dict]) -> dict:
    """Mean of each of METRICS over the images it is defined for (None where it is for none),
    and the number of images scored."""
    out: dict = {}
    for key in METRICS:
        values = [f[key] for f in figures if f.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    out["images"] = len(figures)
    return out


@dataclass
class QualityTable:
    """`sets[set][model]`: the means (see `means`) of one model on one set; `paper[set][method]`
    the published x4 figures, when asked for."""

    scale: int
    models: dict[str, str]  # column label -> model reference, in column order
    sets: dict[str, dict[str, dict]] = field(default_factory=dict)
    paper: dict[str, dict[str, dict]] | None = None

    def add(self, dataset: str, label: str, figures: list[dict]) -> None:
        self.sets.setdefault(dataset, {})[label] = means(figures)

    def add_paper(self) -> None:
        """The paper's columns: its figures for the sets it has, None for the others."""
        self.paper = {}
        for name in self.sets:
            published = PAPER_X4.get(paper_set(name) or "")
            self.paper[name] = {
                method: {"psnr_y": published[method][0], "ssim_y": published[method][1]} if published else None
                for method in PAPER_METHODS
            }

    def to_dict(self) -> dict:
        out = {
            "scale": self.scale,
            "models": [{"label": label, "model": ref} for label, ref in self.models.items()],
            "sets": self.sets,
        }
        if self.paper is not None:
            out["paper"] = {"source": "Ledig et al. 2017 (SRGAN), Table 2", "sets": self.paper}
        return out

    def lines(self) -> list[str]:
        """The table as text: a header of model columns (then the paper's), a group of rows per set."""
        labels = list(self.models)
        heads = labels + ([f"paper {m}" for m in PAPER_METHODS] if self.paper is not None else [])
        widths = [max(8, len(h)) for h in heads]
        with_lpips = any(m.get("lpips") is not None for by_model in self.sets.values() for m in by_model.values())
        rows = [k for k in METRICS if k != "lpips" or with_lpips]

        def cells(values: list[str], paper: list[str]) -> str:
            text = "".join(f"  {v:>{w}}" for v, w in zip(values, widths))
            if self.paper is None:
                return text
            return text + "  |" + "".join(f"  {v:>{w}}" for v, w in zip(paper, widths[len(labels) :]))

        out = [
            f"x{self.scale}: PSNR (dB) and SSIM on Y (BT.601, border {self.scale}); NIQE: naturalness, lower is better"
            + ("; LPIPS: distance to HR, lower is better" if with_lpips else "; LPIPS: no weights, left out"),
        ]
        if self.paper is not None:
            out.append("paper: Ledig et al. 2017 (SRGAN), Table 2, x4, as published (their own PSNR/SSIM code)")
        out.append(f"{'':<8}" + cells(labels, [f"paper {m}" for m in PAPER_METHODS]))
        for name, by_model in self.sets.items():
            images = {m["images"] for m in by_model.values()}
            out.append(f"{name} ({'/'.join(str(n) for n in sorted(images))} images)")
            for key in rows:
                ours = [_fmt(by_model[label].get(key), DIGITS[key]) for label in labels]
                published = [
                    _fmt((figures or {}).get(key), DIGITS[key]) for figures in (self.paper or {}).get(name, {}).values()
                ]
                out.append(f"  {ROW_NAMES[key]:<6}" + cells(ours, published))
        return out


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"
