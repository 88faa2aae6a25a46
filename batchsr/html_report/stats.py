"""The page's numbers: the run's summary from the CSV rows, the gain histogram's bins, and
which images are drawn as figures (a seeded sample that keeps the extremes)."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from dataclasses import dataclass

from batchsr.estimate import Damage, DamageRule
from batchsr.report import ERROR, OK, SKIPPED, Row, Summary


@dataclass(frozen=True)
class Stats:
    """The run's summary as the CSV tells it."""

    rows: int
    ok: int
    skipped: int
    failed: int
    seconds: float  # sum of per-image times: the CSV does not record the run's wall clock
    median_seconds: float | None  # over ok images
    gains: tuple[float, ...]  # finite PSNR gains over bicubic of ok images, in CSV order
    models: tuple[tuple[str, int], ...]  # (model, images), most used first
    providers: tuple[tuple[str, int], ...]
    in_pixels: int  # input pixels of ok images
    estimated: int = 0  # images with damage estimates in the CSV (skipped ones included)
    damaged: int = 0  # ... that estimate.DamageRule judges damaged

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    @property
    def mean_seconds(self) -> float | None:
        return self.seconds / self.processed if self.processed and self.seconds > 0 else None

    @property
    def images_per_second(self) -> float | None:
        return self.processed / self.seconds if self.processed and self.seconds > 0 else None

    @property
    def megapixels_per_second(self) -> float | None:
        return self.in_pixels / 1e6 / self.seconds if self.in_pixels and self.seconds > 0 else None

    @property
    def mean_gain(self) -> float | None:
        return sum(self.gains) / len(self.gains) if self.gains else None


def run_stats(rows: list[Row]) -> Stats:
    """Counts, times and gains of a report's rows (the same rules as the CLI's summary line)."""
    summary = Summary()
    for r in rows:
        summary.add(r)
    seconds = sum(r.seconds for r in rows if r.seconds is not None and r.status != SKIPPED)
    ok_seconds = [r.seconds for r in rows if r.status == OK and r.seconds is not None]
    models = Counter(r.model for r in rows if r.model and r.status != SKIPPED)
    providers = Counter(r.providers for r in rows if r.providers and r.status != SKIPPED)
    pixels = sum(r.width * r.height for r in rows if r.status == OK and r.width and r.height)
    estimated = [r for r in rows if r.status != ERROR and (r.jpeg_quality is not None or r.noise_sigma is not None)]
    rule = DamageRule()
    damaged = sum(rule.seen(Damage(r.jpeg_quality, _nan(r.noise_sigma))) is not None for r in estimated)
    return Stats(
        len(rows),
        summary.ok,
        summary.skipped,
        summary.failed,
        seconds,
        statistics.median(ok_seconds) if ok_seconds else None,
        tuple(summary.gains or ()),
        tuple(models.most_common()),
        tuple(providers.most_common()),
        pixels,
        len(estimated),
        damaged,
    )


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


_NICE_WIDTHS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


def histogram(values: list[float] | tuple[float, ...], target_bins: int = 16) -> list[tuple[float, float, int]]:
    """``(low, high, count)`` bins of a round width (0.1, 0.2, 0.25, 0.5 dB, ...) covering every value.

    A value on an edge counts in the bin above it; the counts sum to ``len(values)``.
    """
    if not values:
        return []
    lo, hi = min(values), max(values)
    span = hi - lo
    width = next((w for w in _NICE_WIDTHS if w * target_bins >= span), span / target_bins)
    start = math.floor(lo / width) * width
    n = max(1, math.floor((hi - start) / width + 1e-9) + 1)
    counts = [0] * n
    for v in values:
        counts[min(n - 1, max(0, math.floor((v - start) / width + 1e-9)))] += 1
    return [(start + i * width, start + (i + 1) * width, c) for i, c in enumerate(counts)]


@dataclass(frozen=True)
class Pick:
    """A row chosen for a figure: its 1-based position in the CSV and why it was chosen."""

    number: int
    row: Row
    why: str  # "every image", "largest gain", "smallest gain" or "random pick"


GROUPS = (
    ("every image", "Every ok image, largest gain first"),
    ("largest gain", "Largest gains over bicubic"),
    ("smallest gain", "Smallest gains (and losses)"),
    ("random pick", "Random picks"),
)


def _largest_first(t: tuple[float, int]) -> tuple[float, int]:
    return -t[0], t[1]


def choose_sample(rows: list[Row], n: int, seed: int = 0) -> list[Pick]:
    """Up to ``n`` ok rows, deterministically: a third the largest gains, a third the smallest,
    the rest a seeded random few of the others (rows without a gain included).

    When ``n`` covers every ok row, all are picked ("every image"), largest
    gain first. Failures and skipped rows are never picked (they have no
    pixels to show; the page lists the failures on their own). Within a
    group, the order is by gain (largest first, smallest first) or by CSV position.
    """
    if n <= 0:
        return []
    ok = [(i + 1, r) for i, r in enumerate(rows) if r.status == OK]
    measured = sorted(((r.gain, i) for i, r in ok if r.gain is not None), key=lambda t: (t[0], t[1]))
    by_number = dict(ok)
    if len(ok) <= n:
        unmeasured = [i for i, r in ok if r.gain is None]
        return [Pick(i, by_number[i], "every image") for _, i in sorted(measured, key=_largest_first)] + [
            Pick(i, by_number[i], "every image") for i in unmeasured
        ]
    n_best = min(-(-n // 3), len(measured))
    n_worst = min(-(-(n - n_best) // 2), len(measured) - n_best)
    best = [i for _, i in sorted(measured[len(measured) - n_best :], key=_largest_first)] if n_best else []
    worst = [i for _, i in measured[:n_worst]]
    chosen = set(best) | set(worst)
    rest = [i for i, _ in ok if i not in chosen]
    n_random = min(n - len(chosen), len(rest))
    randoms = sorted(random.Random(seed).sample(rest, n_random))
    return (
        [Pick(i, by_number[i], "largest gain") for i in best]
        + [Pick(i, by_number[i], "smallest gain") for i in worst]
        + [Pick(i, by_number[i], "random pick") for i in randoms]
    )
