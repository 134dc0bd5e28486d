//! The seed statistics against values computed elsewhere (SciPy 1.x and statsmodels; the line
//! that produced each number is in the comment above it).

use mnist_kit::study::stats::{Summary, Verdict, compare_all, holm, welch};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn welch_matches_scipy() {
    // scipy.stats.ttest_ind([0.9812,0.9805,0.9818], [0.9764,0.9771,0.9759], equal_var=False)
    // -> statistic 9.17831822414839, pvalue 0.0008040873814738308, df 3.976865405212426
    let t = welch(&[0.9812, 0.9805, 0.9818], &[0.9764, 0.9771, 0.9759]).unwrap();
    assert!(close(t.t, 9.17831822414839, 1e-9), "{t:?}");
    assert!(close(t.df, 3.976865405212426, 1e-9), "{t:?}");
    assert!(close(t.p, 0.0008040873814738308, 1e-6), "{t:?}");

    // scipy.stats.ttest_ind([0.9743,0.9761,0.9752,0.9770], [0.9749,0.9738,0.9766],
    //                       equal_var=False)
    // -> statistic 0.549770976463159, pvalue 0.6125629162832604, df 3.8828183254683615
    let t = welch(&[0.9743, 0.9761, 0.9752, 0.9770], &[0.9749, 0.9738, 0.9766]).unwrap();
    assert!(close(t.t, 0.549770976463159, 1e-9), "{t:?}");
    assert!(close(t.df, 3.8828183254683615, 1e-9), "{t:?}");
    assert!(close(t.p, 0.6125629162832604, 1e-6), "{t:?}");

    // scipy.stats.ttest_ind([1,2,3], [1.5,1.5,1.6,1.4,1.5], equal_var=False)
    // -> statistic 0.8647292812265399, pvalue 0.47786675237308157, df 2.0120089459597432
    let t = welch(&[1.0, 2.0, 3.0], &[1.5, 1.5, 1.6, 1.4, 1.5]).unwrap();
    assert!(close(t.t, 0.8647292812265399, 1e-9), "{t:?}");
    assert!(close(t.df, 2.0120089459597432, 1e-9), "{t:?}");
    assert!(close(t.p, 0.47786675237308157, 1e-6), "{t:?}");

    // Symmetric: swapping the samples flips t and keeps p.
    let u = welch(&[1.5, 1.5, 1.6, 1.4, 1.5], &[1.0, 2.0, 3.0]).unwrap();
    assert!(close(u.t, -t.t, 1e-12) && close(u.p, t.p, 1e-12));
    // One value: no spread, no test.
    assert!(welch(&[0.98], &[0.97, 0.96]).is_none());
}

#[test]
fn intervals_match_scipy() {
    // v = np.array([0.9812,0.9805,0.9818]); m = v.mean(); s = v.std(ddof=1)
    // h = scipy.stats.t.ppf(0.975, 2) * s / np.sqrt(3)
    // -> m 0.9811666666666667, s 0.0006506407098647535,
    //    m-h 0.9795503855424917, m+h 0.9827829477908417
    let s = Summary::of(&[0.9812, 0.9805, 0.9818]).unwrap();
    assert_eq!(s.n, 3);
    assert!(close(s.mean, 0.9811666666666667, 1e-12));
    assert!(close(s.std, 0.0006506407098647535, 1e-9));
    assert!(close(s.ci95[0], 0.9795503855424917, 1e-9), "{s:?}");
    assert!(close(s.ci95[1], 0.9827829477908417, 1e-9), "{s:?}");
    assert_eq!((s.min, s.max), (0.9805, 0.9818));
    assert_eq!(s.pct(), "98.12 ± 0.07");

    // Same for [99.1, 99.3] (t.ppf(0.975, 1) = 12.706...):
    // -> m 99.2, s 0.14142135623731153, m-h 97.9293795263825, m+h 100.47062047361747
    let s = Summary::of(&[99.1, 99.3]).unwrap();
    assert!(close(s.ci95[0], 97.9293795263825, 1e-9), "{s:?}");
    assert!(close(s.ci95[1], 100.47062047361747, 1e-9), "{s:?}");

    // One seed: a mean, no spread.
    let one = Summary::of(&[0.99]).unwrap();
    assert!(one.std.is_nan() && one.ci95[0].is_nan());
    assert_eq!(one.pct(), "99.00");
    assert!(Summary::of(&[]).is_none());
    assert!(Summary::of(&[f64::NAN, 1.0]).is_none());
}

#[test]
fn holm_matches_statsmodels() {
    // statsmodels.stats.multitest.multipletests([0.01,0.04,0.03,0.005,0.5], method='holm')[1]
    // -> [0.04, 0.09, 0.09, 0.025, 0.5]
    let got = holm(&[0.01, 0.04, 0.03, 0.005, 0.5]);
    let want = [0.04, 0.09, 0.09, 0.025, 0.5];
    for (g, w) in got.iter().zip(want) {
        assert!(close(*g, w, 1e-12), "{got:?}");
    }
    assert_eq!(holm(&[f64::NAN, 0.01]), vec![1.0, 0.02]);
    assert!(holm(&[]).is_empty());
}

#[test]
fn identical_settings_are_not_distinguishable() {
    // Two settings that produce the same numbers on every seed.
    let same = vec![0.9801, 0.9812, 0.9795];
    let c = compare_all(&[("a".into(), same.clone()), ("b".into(), same)], true);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].verdict, Verdict::NotDistinguishable);
    assert_eq!(c[0].p, 1.0);
    let p = c[0].paired.unwrap();
    assert_eq!(p.diff, 0.0);
    assert!(p.diff_ci95[0] <= 0.0 && p.diff_ci95[1] >= 0.0);
    assert_eq!(p.p_improve, 0.5);
}

#[test]
fn clear_differences_get_a_verdict() {
    let settings = vec![
        ("low".to_string(), vec![0.960, 0.961, 0.962]),
        ("mid".to_string(), vec![0.9801, 0.9812, 0.9795]),
        ("mid2".to_string(), vec![0.9803, 0.9790, 0.9811]),
    ];
    let c = compare_all(&settings, true);
    assert_eq!(c.len(), 3, "every pair once");
    let find = |a: &str, b: &str| c.iter().find(|x| x.a == a && x.b == b).unwrap();
    assert_eq!(find("low", "mid").verdict, Verdict::BBetter);
    assert_eq!(find("low", "mid").winner(), Some("mid"));
    assert_eq!(find("mid", "mid2").verdict, Verdict::NotDistinguishable);
    for x in &c {
        assert!(x.p_holm >= x.p, "Holm never lowers a p-value");
        let p = x.paired.unwrap();
        assert!(p.diff_ci95[0] <= p.diff && p.diff <= p.diff_ci95[1]);
        assert!(
            p.mdd80 > 0.0 && p.mcnemar_p.is_nan(),
            "seeds only: no McNemar"
        );
    }
    // Every seed of mid beats every seed of low.
    assert_eq!(find("low", "mid").paired.unwrap().p_improve, 0.0);
    // Lower is better (a loss): the verdict turns around.
    let losses = compare_all(&settings[..2], false);
    assert_eq!(losses[0].verdict, Verdict::ABetter);
    // JSON words of the contract.
    let json = serde_json::to_value(&c[0]).unwrap();
    assert_eq!(json["verdict"], "b better");
}

#[test]
fn mcnemar_percentiles_and_power_constants_match_scipy_and_numpy() {
    use mnist_kit::study::stats::{mcnemar_exact, mdd80, percentile};
    // scipy.stats.binomtest(3, 13, 0.5).pvalue -> 0.09228515625
    assert!(close(mcnemar_exact(3, 10), 0.09228515625, 1e-12));
    assert!(close(mcnemar_exact(10, 3), 0.09228515625, 1e-12));
    // scipy.stats.binomtest(40, 100, 0.5).pvalue -> 0.05688793364098089
    assert!(close(mcnemar_exact(40, 60), 0.05688793364098089, 1e-9));
    // scipy.stats.binomtest(0, 5, 0.5).pvalue -> 0.0625
    assert!(close(mcnemar_exact(0, 5), 0.0625, 1e-12));
    // scipy.stats.binomtest(57, 117, 0.5).pvalue -> 0.8534084458955625
    assert!(close(mcnemar_exact(57, 60), 0.8534084458955625, 1e-9));
    assert_eq!(mcnemar_exact(0, 0), 1.0);
    // scipy.stats.norm.ppf(0.975) + scipy.stats.norm.ppf(0.8) = 1.959963984540054 + 0.8416212335729143
    assert!(close(
        mdd80(1.0),
        1.959963984540054 + 0.8416212335729143,
        1e-12
    ));
    // v = np.sort([0.3, 0.1, 0.9, 0.5, 0.7, 0.2]); np.percentile(v, [2.5, 97.5, 50])
    // -> 0.1125, 0.875, 0.4
    let v = [0.1, 0.2, 0.3, 0.5, 0.7, 0.9];
    assert!(close(percentile(&v, 2.5), 0.1125, 1e-12));
    assert!(close(percentile(&v, 97.5), 0.875, 1e-12));
    assert!(close(percentile(&v, 50.0), 0.4, 1e-12));
}

/// Simulated runs on `n` images: most images easy, some hard (each seed gets them right or
/// wrong at random), a few impossible; `shift` more hard images wrong per seed in arm B.
fn simulated_arm(
    rng: &mut rand_chacha::ChaCha8Rng,
    hard_p: &[f64],
    seeds: usize,
    n: usize,
    extra_wrong: usize,
) -> Vec<Vec<bool>> {
    use rand::Rng;
    (0..seeds)
        .map(|_| {
            let mut right = vec![true; n];
            for (i, &p) in hard_p.iter().enumerate() {
                right[i] = rng.random::<f64>() >= p;
            }
            for r in right.iter_mut().skip(hard_p.len()).take(extra_wrong) {
                *r = false;
            }
            // Easy images: one in a thousand missed.
            for r in right.iter_mut().skip(hard_p.len() + extra_wrong) {
                if rng.random::<f64>() < 0.001 {
                    *r = false;
                }
            }
            right
        })
        .collect()
}

fn verdicts(seeds: usize, extra_wrong: usize, sims: usize) -> usize {
    use mnist_kit::study::stats::{ImageResamples, Sample, paired};
    use rand::{Rng, SeedableRng};
    let n = 2000;
    let images = ImageResamples::new(n, 1000, 11);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    // 40 hard images (wrong with probability 0.2-0.8), then 10 impossible ones.
    let mut hard: Vec<f64> = (0..40).map(|_| rng.random_range(0.2..0.8)).collect();
    hard.extend([0.99; 10]);
    let mut called = 0;
    for sim in 0..sims {
        let sample = |v: Vec<Vec<bool>>| -> Vec<Sample> {
            v.iter().map(|c| Sample::of_outcomes(c, &images)).collect()
        };
        let a = sample(simulated_arm(&mut rng, &hard, seeds, n, 0));
        let b = sample(simulated_arm(&mut rng, &hard, seeds, n, extra_wrong));
        let p = paired(&a, &b, true, sim as u64).unwrap();
        if p.verdict != Verdict::NotDistinguishable {
            called += 1;
        }
    }
    called
}

#[test]
fn the_verdict_rule_calls_at_most_five_percent_of_equal_pairs() {
    // 300 simulated A/A comparisons per seed count: about 15 calls would be 5 %; the bound
    // allows for the simulation's own sampling error (two standard deviations).
    for seeds in [3, 5, 10] {
        let called = verdicts(seeds, 0, 300);
        assert!(
            called <= 15 + 8,
            "{seeds} seeds: {called} of 300 equal pairs called"
        );
    }
}

#[test]
fn the_verdict_rule_sees_a_real_difference() {
    // Arm B misses 20 more images of 2,000 on every seed (1 point): with 5 seeds the rule must
    // call it nearly always. (8 images, 0.4 points, are called about half the time: the
    // interval includes the test images' own sampling error, and 8 images are few.)
    let called = verdicts(5, 20, 100);
    assert!(called >= 90, "{called} of 100");
}

/// Normal draws (Box-Muller) from a seeded generator.
fn normals(rng: &mut rand_chacha::ChaCha8Rng, n: usize, mean: f64, sd: f64) -> Vec<f64> {
    use rand::Rng;
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        })
        .collect()
}

#[test]
fn a_a_splits_of_once_per_run_quantities_call_about_five_percent() {
    // A quantity measured once per run (a gap, an epoch), 10 seeds of one setting: every 5 vs
    // 5 split, and 126 deals of 3 vs 3, over 60 simulated experiments. The old bootstrap with
    // normal quantiles called 8.7 % and 13.5 % of such splits; Student's t calls about 5 %.
    use mnist_kit::study::stats::{Sample, aa_calls};
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for half in [5, 3] {
        let (mut called, mut total) = (0, 0);
        for e in 0..60 {
            let runs: Vec<Sample> = normals(&mut rng, 10, 0.5, 0.02)
                .into_iter()
                .map(Sample::of_value)
                .collect();
            let (c, t) = aa_calls(&runs, half, 126, true, e);
            called += c;
            total += t;
        }
        let rate = called as f64 / total as f64;
        assert!(
            (0.025..=0.075).contains(&rate),
            "{half} vs {half}: {called} of {total} called ({rate:.3})"
        );
    }
}

#[test]
fn a_a_splits_count_every_split_once() {
    use mnist_kit::study::stats::{Sample, aa_calls};
    let runs: Vec<Sample> = (0..10).map(|i| Sample::of_value(f64::from(i))).collect();
    // C(10, 5) / 2 splits of ten seeds into two fives.
    assert_eq!(aa_calls(&runs, 5, 999, true, 1).1, 126);
    // More seeds than two halves: the asked number of deals.
    assert_eq!(aa_calls(&runs, 3, 40, true, 1).1, 40);
    assert_eq!(
        aa_calls(&runs[..5], 3, 40, true, 1),
        (0, 0),
        "too few seeds"
    );
}

#[test]
fn runs_of_the_same_seeds_are_compared_seed_by_seed() {
    // Two settings trained on the same five seeds; each seed moves both settings alike (a
    // shared initialisation and data order), by far more than the settings differ. Paired by
    // seed, the difference is clear; as two unrelated sets of seeds (Welch), it is not.
    use mnist_kit::study::stats::{Method, Sample, paired};
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let (mut by_seed, mut unpaired) = (0, 0);
    for sim in 0..100 {
        let seed_effect = normals(&mut rng, 5, 0.0, 1.0);
        let noise_a = normals(&mut rng, 5, 0.0, 0.05);
        let noise_b = normals(&mut rng, 5, 0.0, 0.05);
        let arm = |shift: f64, noise: &[f64], seeded: bool| -> Vec<Sample> {
            (0..5)
                .map(|k| {
                    let s = Sample::of_value(seed_effect[k] + noise[k] + shift);
                    if seeded {
                        s.with_seed(40 + k as u64)
                    } else {
                        s
                    }
                })
                .collect()
        };
        let p = paired(
            &arm(0.3, &noise_a, true),
            &arm(0.0, &noise_b, true),
            true,
            sim,
        )
        .unwrap();
        assert_eq!(p.method, Method::PairedSeeds);
        assert_eq!(p.df, 4.0);
        by_seed += usize::from(p.verdict == Verdict::ABetter);
        let q = paired(
            &arm(0.3, &noise_a, false),
            &arm(0.0, &noise_b, false),
            true,
            sim,
        )
        .unwrap();
        assert_eq!(q.method, Method::WelchSeeds);
        unpaired += usize::from(q.verdict == Verdict::ABetter);
    }
    assert!(by_seed >= 95, "paired: {by_seed} of 100 called");
    assert!(unpaired <= 30, "unpaired: {unpaired} of 100 called");
}

#[test]
fn a_paired_interval_is_student_t_over_the_seed_differences() {
    use mnist_kit::study::stats::{Sample, paired};
    // Differences 1, 2, 3: mean 2, sd 1, se 1/sqrt 3, t_0.975(2) = 4.302652729911275.
    let a: Vec<Sample> = [11.0, 22.0, 33.0]
        .iter()
        .zip(1u64..)
        .map(|(&v, s)| Sample::of_value(v).with_seed(s))
        .collect();
    let b: Vec<Sample> = [10.0, 20.0, 30.0]
        .iter()
        .zip(1u64..)
        .map(|(&v, s)| Sample::of_value(v).with_seed(s))
        .collect();
    let p = paired(&a, &b, true, 0).unwrap();
    let half = 4.302_652_729_911_275 / 3f64.sqrt();
    assert!(close(p.diff_ci95[0], 2.0 - half, 1e-9) && close(p.diff_ci95[1], 2.0 + half, 1e-9));
    assert_eq!(
        p.verdict,
        Verdict::NotDistinguishable,
        "the interval includes zero"
    );
}
