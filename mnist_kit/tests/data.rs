//! Foundation tests on the real bundled MNIST files and on deliberately broken copies.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use candle_core::Device;
use mnist_kit::Error;
use mnist_kit::data::explore::{class_counts, mean_images, split_stats};
use mnist_kit::data::idx::encode_idx;
use mnist_kit::data::{BatchOptions, InputSpec, Layout, Mnist, Normalization};

fn mnist() -> Mnist {
    Mnist::load_default().expect("bundled MNIST loads")
}

#[test]
fn bundled_mnist_has_the_published_counts_and_statistics() {
    let m = mnist();
    assert_eq!(m.train.len(), 60_000);
    assert_eq!(m.test.len(), 10_000);
    assert_eq!((m.train.rows(), m.train.cols()), (28, 28));
    assert_eq!(
        class_counts(&m.train),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        class_counts(&m.test),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let s = split_stats(&m.train);
    assert!((s.pixel_mean - 0.1307).abs() < 5e-4, "{}", s.pixel_mean);
    assert!((s.pixel_std - 0.3081).abs() < 5e-4, "{}", s.pixel_std);
    assert_eq!(m.train.label(0), Some(5));
    assert_eq!(m.test.label(0), Some(7));
    let means = mean_images(&m.train);
    // A "1" is thin: its mean image holds less ink than a "0"'s.
    let ink = |v: &Vec<f32>| v.iter().sum::<f32>();
    assert!(ink(&means[1]) < ink(&means[0]));
}

#[test]
fn validation_split_is_seeded_and_disjoint() {
    let m = mnist();
    let (t1, v1) = m.train.split_validation(5000, 7).unwrap();
    let (t2, v2) = m.train.split_validation(5000, 7).unwrap();
    let (_, v3) = m.train.split_validation(5000, 8).unwrap();
    assert_eq!((t1.len(), v1.len()), (55_000, 5000));
    assert_eq!(v1.labels(), v2.labels());
    assert_eq!(t1.labels(), t2.labels());
    let img = |s: &mnist_kit::data::Split, i| s.image(i).unwrap().to_vec();
    assert!(
        (0..50).any(|i| img(&v1, i) != img(&v3, i)),
        "another seed, another split"
    );
    // Disjoint and complete: every training image lands in exactly one part.
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let dup_in_file = {
        let mut s = HashSet::new();
        (0..m.train.len())
            .filter(|&i| !s.insert(img(&m.train, i)))
            .count()
    };
    for s in [&t1, &v1] {
        for i in 0..s.len() {
            seen.insert(img(s, i));
        }
    }
    assert_eq!(seen.len() + dup_in_file, 60_000);
    let (t0, v0) = m.train.split_validation(0, 1).unwrap();
    assert_eq!((t0.len(), v0.len()), (60_000, 0));
    assert!(m.train.split_validation(60_001, 1).is_err());
}

#[test]
fn batches_shuffle_per_epoch_and_cover_every_sample_once() {
    let m = mnist();
    let split = m.train.take(1000);
    let spec = InputSpec {
        side: 28,
        layout: Layout::Flat,
        normalization: Normalization::Standard,
    };
    let opts = BatchOptions {
        batch_size: 64,
        shuffle: true,
        seed: 3,
    };
    let order = |opts: BatchOptions, epoch| -> Vec<usize> {
        split
            .batches(spec, opts, epoch, &Device::Cpu)
            .unwrap()
            .flat_map(|b| b.unwrap().positions)
            .collect()
    };
    let e0 = order(opts, 0);
    assert_eq!(e0.len(), 1000, "last partial batch kept");
    let mut sorted = e0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    assert_eq!(e0, order(opts, 0), "same seed, same order");
    assert_ne!(e0, order(opts, 1), "each epoch reshuffles");
    assert_ne!(
        e0,
        order(BatchOptions { seed: 4, ..opts }, 0),
        "another seed"
    );
    let plain = order(
        BatchOptions {
            shuffle: false,
            ..opts
        },
        0,
    );
    assert_eq!(plain, (0..1000).collect::<Vec<_>>());
    let batches: Vec<_> = split
        .batches(spec, opts, 0, &Device::Cpu)
        .unwrap()
        .collect();
    assert_eq!(batches.len(), 16);
    assert_eq!(
        batches[15].as_ref().unwrap().images.dims(),
        &[1000 - 15 * 64, 784]
    );
}

#[test]
fn padded_nchw_batches_are_normalized_and_centred() {
    let m = mnist();
    let spec = InputSpec {
        side: 32,
        layout: Layout::Nchw,
        normalization: Normalization::Standard,
    };
    let opts = BatchOptions {
        batch_size: 10,
        ..Default::default()
    };
    let b = m
        .test
        .batches(spec, opts, 0, &Device::Cpu)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(b.images.dims(), &[10, 1, 32, 32]);
    assert_eq!(
        b.labels.to_vec1::<u32>().unwrap(),
        m.test.labels()[..10]
            .iter()
            .map(|&l| l as u32)
            .collect::<Vec<_>>()
    );
    let x = b.images.to_vec3::<f32>().map(|_| ()).err(); // rank 4: not a vec3
    assert!(x.is_some());
    let v: Vec<f32> = b.images.flatten_all().unwrap().to_vec1().unwrap();
    let bg = (0.0 - 0.1307) / 0.3081;
    // The 2-pixel border is background; pixel (r, c) of the image sits at (r+2, c+2).
    assert!((v[0] - bg).abs() < 1e-6);
    let raw = m.test.image(0).unwrap();
    let (r, c) = (14, 14);
    let expect = (raw[r * 28 + c] as f32 / 255.0 - 0.1307) / 0.3081;
    assert!((v[(r + 2) * 32 + c + 2] - expect).abs() < 1e-6);
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A tiny valid dataset: 3 train and 2 test images of 2x2.
fn tiny(dir: &Path) {
    write(
        dir,
        "train-images-idx3-ubyte",
        &encode_idx(&[3, 2, 2], &[0; 12]),
    );
    write(
        dir,
        "train-labels-idx1-ubyte",
        &encode_idx(&[3], &[1, 2, 3]),
    );
    write(
        dir,
        "t10k-images-idx3-ubyte.gz",
        &gz(&encode_idx(&[2, 2, 2], &[9; 8])),
    );
    write(dir, "t10k-labels-idx1-ubyte", &encode_idx(&[2], &[0, 9]));
}

#[test]
fn any_mnist_format_dataset_loads_gz_or_raw() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let m = Mnist::load(dir.path()).unwrap();
    assert_eq!((m.train.len(), m.test.len()), (3, 2));
    assert_eq!(m.test.labels(), vec![0, 9]);
}

fn load_err(break_it: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    break_it(dir.path());
    let err = Mnist::load(dir.path()).expect_err("broken dataset must not load");
    let msg = err.to_string();
    assert!(!msg.is_empty());
    msg
}

#[test]
fn broken_datasets_are_typed_errors_naming_the_file() {
    let e = Mnist::load("/nonexistent/mnist").unwrap_err();
    assert!(matches!(e, Error::DataNotFound { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/mnist"));

    let m = load_err(|d| write(d, "train-labels-idx1-ubyte", &[0, 0, 8, 2, 0, 0, 0, 3]));
    assert!(m.contains("train-labels") && m.contains("rank"), "{m}");

    let m = load_err(|d| write(d, "train-images-idx3-ubyte", &[1, 2, 3, 4, 5, 6, 7, 8]));
    assert!(m.contains("magic"), "{m}");

    let m = load_err(|d| {
        let full = encode_idx(&[3, 2, 2], &[0; 12]);
        write(d, "train-images-idx3-ubyte", &full[..full.len() - 1]);
    });
    assert!(m.contains("train-images") && m.contains("truncated"), "{m}");

    // A header claiming 2^32-1 images in a file of a few bytes: rejected before allocation.
    let m = load_err(|d| {
        write(
            d,
            "train-images-idx3-ubyte",
            &encode_idx(&[u32::MAX, 28, 28], &[0; 4]),
        )
    });
    assert!(m.contains("claims") || m.contains("limit"), "{m}");
    let m = load_err(|d| {
        write(
            d,
            "t10k-images-idx3-ubyte.gz",
            &gz(&encode_idx(&[1 << 30, 1, 1], &[0; 4])),
        )
    });
    assert!(m.contains("claims"), "{m}");

    let m = load_err(|d| write(d, "train-labels-idx1-ubyte", &encode_idx(&[2], &[1, 2])));
    assert!(m.contains("2 labels") && m.contains("3 images"), "{m}");

    let m = load_err(|d| write(d, "train-labels-idx1-ubyte", &encode_idx(&[3], &[1, 10, 3])));
    assert!(m.contains("label 10"), "{m}");

    let m = load_err(|d| {
        let mut bytes = gz(&encode_idx(&[2, 2, 2], &[9; 8]));
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        bytes.truncate(bytes.len() - 4);
        write(d, "t10k-images-idx3-ubyte.gz", &bytes);
    });
    assert!(m.contains("t10k-images"), "{m}");

    let m = load_err(|d| std::fs::remove_file(d.join("t10k-labels-idx1-ubyte")).unwrap());
    assert!(m.contains("t10k-labels") && m.contains("missing"), "{m}");
}
