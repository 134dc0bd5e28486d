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
}

#[test]
fn clear_differences_get_a_verdict_after_holm() {
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
    }
    // Lower is better (a loss): the verdict turns around.
    let losses = compare_all(&settings[..2], false);
    assert_eq!(losses[0].verdict, Verdict::ABetter);
    // JSON words of the contract.
    let json = serde_json::to_value(&c[0]).unwrap();
    assert_eq!(json["verdict"], "b better");
}
