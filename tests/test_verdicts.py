"""The comparison's statistics against cases worked by hand: the paired tests, Holm's
correction, per-image correctness on disk, and no verdict beyond what the images support."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prunelab.comparison.verdicts import (
    ALPHA,
    BudgetRanking,
    Comparison,
    Error,
    Family,
    Scores,
    detectable_difference,
    holm,
    load_dense_scores,
    load_point_scores,
    paired_test,
    power_rows,
    rank_agreement,
)
from prunelab.io import write_json
from prunelab.per_image import correct_path, decode, encode


def scores(*rows: list[bool] | np.ndarray) -> Scores:
    return Scores(np.array(rows, dtype=bool))


def test_correctness_round_trips_for_any_number_of_images(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for images in (1, 7, 8, 9, 2500):
        correct = rng.random(images) < 0.7
        text = encode(correct)
        assert np.array_equal(decode(text, images), correct)
    assert len(encode(np.ones(2500, dtype=bool))) <= 420  # 313 bytes as base64
    with pytest.raises(ValueError, match="313 bytes of correctness for 100 images"):
        decode(encode(np.ones(2500, dtype=bool)), 100)
    # as the sweep writes them: {side: {recovery: {seed: bits}}} beside the metrics
    metrics = tmp_path / "m-2x.json"
    a, b = rng.random(2500) < 0.8, rng.random(2500) < 0.6
    write_json(
        correct_path(metrics),
        {
            "images": 2500,
            "recovery": {"none": {"0": encode(a)}},
            "random_floor": {"none": {"0": encode(b), "1": encode(a)}},
        },
    )
    loaded = load_point_scores(metrics)
    assert correct_path(metrics).name == "m-2x.correct.json"
    assert np.array_equal(loaded["recovery"]["none"].correct, a[None, :])
    assert np.array_equal(loaded["random_floor"]["none"].correct, np.stack([b, a]))
    write_json(correct_path(tmp_path / "dense.json"), {"images": 2500, "dense": encode(a)})
    assert load_dense_scores(tmp_path / "dense.json").accuracy == pytest.approx(a.mean())


def test_two_single_scores_get_mcnemars_exact_test() -> None:
    # 10 images only a gets right, 2 only b, 88 both or neither:
    # p = 2 · (C(12,10) + C(12,11) + C(12,12)) / 2^12 = 2 · 79 / 4096
    a = [True] * 10 + [False] * 2 + [True] * 50 + [False] * 38
    b = [False] * 10 + [True] * 2 + [True] * 50 + [False] * 38
    test = paired_test(scores(a), scores(b))
    assert test.test == "McNemar exact"
    assert test.p == pytest.approx(2 * 79 / 4096)
    assert test.difference == pytest.approx(0.08)


def test_agreeing_on_every_image_is_no_difference_never_an_infinite_z() -> None:
    same = [True] * 60 + [False] * 40
    assert paired_test(scores(same), scores(same)).p == 1.0
    # seeds that never vary and agree image by image: zero error, still no verdict
    test = paired_test(scores(same, same), scores(same, same))
    assert test.p == 1.0 and math.isfinite(test.z)
    family = Family()
    verdict = family.compare("a", "b", scores(same, same), scores(same))
    family.correct()
    assert verdict.outcome == "within noise"


def test_paired_z_adds_the_seed_spread_which_more_images_do_not_shrink() -> None:
    # a: 2 seeds on 4 images, b: 1 score. Seed means per image (1, .5, 1, 0) against b (1, 0, 0, 0):
    # d = (0, .5, 1, 0), mean .375, var(d, ddof=1) = 0.229167, over 4 images = 0.0572917;
    # a's seed accuracies .75 and .5: var .03125, over 2 seeds = 0.015625.
    a = scores([True, True, True, False], [True, False, True, False])
    b = scores([True, False, False, False])
    test = paired_test(a, b)
    assert test.test == "paired z, images and seeds"
    assert test.z == pytest.approx(0.375 / math.sqrt(0.229167 / 4 + 0.015625), rel=1e-4)
    # the same seeds repeated over 100× the images: the images' part shrinks (d's variance over
    # its 400 values is 0.171875 · 400/399), the seeds' does not
    many = paired_test(Scores(np.tile(a.correct, 100)), Scores(np.tile(b.correct, 100)))
    assert many.z == pytest.approx(0.375 / math.sqrt(0.171875 / 399 + 0.015625), rel=1e-6)
    assert many.z < 0.375 / math.sqrt(0.015625)


def test_holm_against_a_case_worked_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.5 · 2 = 1.0 first; 0.9 · 1 may not fall below it
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_the_family_corrects_every_verdict_and_skips_pairs_near_chance() -> None:
    rng = np.random.default_rng(1)
    family = Family()
    strong = rng.random(2500) < 0.8
    weak = strong & (rng.random(2500) < 0.9)  # about 8 points lower, on the same images
    # significant alone (p about 0.03), not among 20 tests
    borderline = strong.copy()
    borderline[np.flatnonzero(strong)[:21]] = False
    borderline[np.flatnonzero(~strong)[:8]] = True
    assert 0.01 < paired_test(scores(strong), scores(borderline)).p < 0.05
    clear = family.compare("strong", "weak", scores(strong), scores(weak))
    marginal = family.compare("strong", "borderline", scores(strong), scores(borderline))
    guessing = family.compare("g1", "g2", scores(rng.random(2500) < 0.11), scores(rng.random(2500) < 0.10))
    for i in range(18):
        family.compare(f"n{i}", "m", scores(strong), scores(strong))
    family.correct()
    assert family.size == 20  # the near-chance pair is not tested
    assert clear.outcome == "above"
    assert marginal.outcome == "within noise" and marginal.p_holm > 0.05
    assert guessing.outcome == "near chance" and guessing.as_dict()["p"] is None
    # asking the same pair again is one verdict, not two tests
    assert family.compare("strong", "weak", scores(strong), scores(weak)) is clear


def test_rank_agreement_against_known_rankings() -> None:
    reference = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    same = rank_agreement({"a": 0.5, "b": 0.4, "c": 0.3, "d": 0.2}, reference)
    assert same.tau == pytest.approx(1.0) and same.flips == []
    reversed_ = rank_agreement({"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}, reference)
    assert reversed_.tau == pytest.approx(-1.0) and len(reversed_.flips) == 6
    # one adjacent swap of four: 5 concordant, 1 discordant pair → τ = 4 / 6; exact p: 8 of the
    # 24 orders have at most one or at least five discordant pairs
    swapped = rank_agreement({"a": 0.9, "b": 0.7, "c": 0.8, "d": 0.6}, reference)
    assert swapped.tau == pytest.approx(4 / 6) and swapped.flips == [("b", "c")]
    assert swapped.p == pytest.approx(8 / 24)
    # a ranking that ties everything has no order to agree with
    assert math.isnan(rank_agreement(dict.fromkeys(reference, 0.5), reference).tau)


def test_the_detectable_difference_against_a_case_worked_by_hand() -> None:
    # 100 images, 10 only a gets right, 10 only b: per-image differences +1 ×10, -1 ×10, 0 ×80,
    # var (ddof 1) 20/99, over 100 images; at 0.05 with 80 % power: (1.959964 + 0.841621) · SE
    a = [True] * 10 + [False] * 10 + [True] * 50 + [False] * 30
    b = [False] * 10 + [True] * 10 + [True] * 50 + [False] * 30
    error = paired_test(scores(a), scores(b)).error
    assert error is not None and error.seeds == ((0.0, 1), (0.0, 1))
    se = math.sqrt(20 / 99 / 100)
    assert detectable_difference(error, 0.05) == pytest.approx(2.801585 * se, rel=1e-6)
    assert detectable_difference(error, 0.05, images_scale=0.25) == pytest.approx(2.801585 * se / 2, rel=1e-6)
    # the seeds' part: a's seed accuracy varies by 0.0009 over 2 seeds; on 3 it is over 3
    seeded = Error(0.0001, ((0.0009, 2), (0.0, 1)))
    assert seeded.variance() == pytest.approx(0.0001 + 0.00045)
    assert seeded.variance(seeds=3) == pytest.approx(0.0001 + 0.0003)
    assert seeded.variance(seeds=1) == pytest.approx(seeded.variance())  # never fewer seeds than ran


def test_a_difference_as_large_as_the_detectable_one_is_found_four_times_in_five() -> None:
    """Simulated: two results that disagree on 20 % of 2,000 images, a right alone on
    (20 % + Δ)/2 of them and b on (20 % - Δ)/2, where Δ is the detectable difference of such a
    pair; McNemar's test at 0.05 finds it in about 80 % of 2,000 draws."""
    rng = np.random.default_rng(0)
    images, draws, disagree = 2000, 2000, 0.2
    u = rng.random(images)
    no_difference = paired_test(scores(u < disagree / 2), scores((u >= disagree / 2) & (u < disagree)))
    assert no_difference.error is not None
    delta = detectable_difference(no_difference.error, ALPHA)
    found = 0
    for _ in range(draws):
        u = rng.random(images)
        a = u < (disagree + delta) / 2
        b = (u >= (disagree + delta) / 2) & (u < disagree)
        found += paired_test(scores(a), scores(b)).p < ALPHA
    assert 0.76 < found / draws < 0.84


def test_power_rows_undo_the_images_and_seeds_the_budget_chose() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(1000) < 0.8

    def noisy(flip: float) -> np.ndarray:
        return base ^ (rng.random(1000) < flip)

    family = Family()
    best = family.compare("a", "b", scores(noisy(0.05), noisy(0.08)), scores(noisy(0.1), noisy(0.06)))
    floor = family.compare("c", "floor", scores(noisy(0.05)), scores(noisy(0.5), noisy(0.4), noisy(0.6)))
    family.correct()
    comparison = Comparison(
        {("c", "2x", "finetune"): floor},
        [BudgetRanking("macs_speedup", 2.0, [], best)],
        "finetune",
        family,
        [],
    )
    rows = power_rows(comparison, 1000, 4000, 3)
    assert [(r.images, r.seeds) for r in rows] == [(1000, None), (4000, None), (1000, 3), (4000, 3)]
    strict, loose = rows[0].detectable["best_at_budget"]
    assert best.test is not None and best.test.error is not None
    assert loose == pytest.approx(detectable_difference(best.test.error, ALPHA), abs=1e-6)
    assert strict == pytest.approx(detectable_difference(best.test.error, ALPHA / 2), abs=1e-6)
    assert strict > loose
    assert rows[1].detectable["best_at_budget"][1] == pytest.approx(
        detectable_difference(best.test.error, ALPHA, images_scale=0.25), abs=1e-6
    )
    assert rows[2].detectable["best_at_budget"][1] < loose  # 3 seeds instead of 2
    assert rows[0].verdicts == {"best_at_budget": 1, "against_random_floor": 1}
    # every image already scored and every seeded result on all seeds: nothing to undo
    assert [(r.images, r.seeds) for r in power_rows(comparison, 1000, 1000, 2)] == [(1000, None)]
