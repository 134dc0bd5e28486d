//! The model zoo: exact parameter counts, shapes on real batches, train/eval behaviour,
//! seeded init and save/load.

use candle_core::{Device, Tensor};
use mnist_kit::data::{BatchOptions, Mnist};
use mnist_kit::models::{MODEL_NAMES, Model, ModelConfig, Network};

const EXPECTED: [(&str, usize); 7] = [
    ("dense128", 101_770),
    ("mlp-61k", 61_450),
    ("mlp-500-150", 469_160),
    ("mlp-800", 636_010),
    ("lenet5", 61_706),
    ("lenet5-28", 44_426),
    ("simple-cnn", 34_826),
];

fn batch(mnist: &Mnist, net: &Network, n: usize) -> Tensor {
    let opts = BatchOptions {
        batch_size: n,
        ..Default::default()
    };
    let mut it = mnist
        .test
        .batches(net.input_spec(), opts, 0, &Device::Cpu)
        .unwrap();
    it.next().unwrap().unwrap().images
}

#[test]
fn parameter_counts_match_the_study() {
    for (name, params) in EXPECTED {
        let net = Network::preset(name, 0, &Device::Cpu).unwrap();
        let s = net.summary();
        assert_eq!(s.params, params, "{name}");
        assert_eq!(s.buffers, 0, "{name}");
        assert_eq!(
            net.trainable_count(),
            params,
            "{name}: summary agrees with the tensors"
        );
    }
    // Summaries of every model agree with the parameters actually allocated.
    for name in MODEL_NAMES {
        let net = Network::preset(name, 0, &Device::Cpu).unwrap();
        let s = net.summary();
        let all: usize = net.params().iter().map(|p| p.var.elem_count()).sum();
        assert_eq!(s.params + s.buffers, all, "{name}");
        assert_eq!(s.params, net.trainable_count(), "{name}");
        assert_eq!(s.buffers, net.buffer_count(), "{name}");
    }
    let lenet = Network::preset("lenet5", 0, &Device::Cpu)
        .unwrap()
        .summary();
    assert_eq!(lenet.layers[0].formula, "(5*5*1+1)*6 = 156");
    assert_eq!(lenet.layers[0].output_shape, vec![6, 28, 28]);
    // Attention adds two 7x7 convs on 2 maps: 2 * (7*7*2+1) = 198 parameters.
    let att = Network::preset("lenet5-attention", 0, &Device::Cpu)
        .unwrap()
        .summary();
    assert_eq!(att.params, 61_706 + 198);
    // BatchNorm adds trainable gamma/beta and non-trainable running stats.
    let reg = Network::preset("lenet5-regularized", 0, &Device::Cpu)
        .unwrap()
        .summary();
    assert_eq!(reg.params, 61_706 + 2 * (6 + 16 + 120));
    assert_eq!(reg.buffers, 2 * (6 + 16 + 120));
}

#[test]
fn every_model_maps_a_real_batch_to_ten_logits() {
    let mnist = Mnist::load_default().unwrap();
    for name in MODEL_NAMES {
        let net = Network::preset(name, 1, &Device::Cpu).unwrap();
        let x = batch(&mnist, &net, 3);
        for train in [false, true] {
            let y = net.forward_t(&x, train).unwrap();
            assert_eq!(y.dims(), &[3, 10], "{name}");
            let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "{name}");
        }
    }
    let net = Network::preset("lenet5-attention", 1, &Device::Cpu).unwrap();
    let (_, maps) = net.forward_with_attention(&batch(&mnist, &net, 2)).unwrap();
    assert_eq!(maps.len(), 2);
    assert_eq!(maps[0].dims(), &[2, 1, 28, 28]);
    assert_eq!(maps[1].dims(), &[2, 1, 10, 10]);
}

fn logits(net: &Network, x: &Tensor, train: bool) -> Vec<f32> {
    net.forward_t(x, train)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn dropout_and_batch_norm_depend_on_the_train_flag() {
    let mnist = Mnist::load_default().unwrap();
    for name in ["lenet5-regularized", "simple-cnn", "resnet"] {
        let net = Network::preset(name, 2, &Device::Cpu).unwrap();
        let x = batch(&mnist, &net, 8);
        let eval1 = logits(&net, &x, false);
        let eval2 = logits(&net, &x, false);
        assert_eq!(eval1, eval2, "{name}: evaluation is deterministic");
        let train = logits(&net, &x, true);
        assert_ne!(eval1, train, "{name}: training mode differs");
    }
    // BatchNorm updates its running statistics only in training.
    let net = Network::preset("lenet5-regularized", 2, &Device::Cpu).unwrap();
    let x = batch(&mnist, &net, 8);
    let before = logits(&net, &x, false);
    assert_eq!(before, logits(&net, &x, false));
    let _ = logits(&net, &x, true);
    assert_ne!(before, logits(&net, &x, false), "running stats moved");
}

#[test]
fn same_seed_same_weights_and_save_load_round_trips() {
    let mnist = Mnist::load_default().unwrap();
    let a = Network::preset("lenet5-regularized", 7, &Device::Cpu).unwrap();
    let b = Network::preset("lenet5-regularized", 7, &Device::Cpu).unwrap();
    let c = Network::preset("lenet5-regularized", 8, &Device::Cpu).unwrap();
    let x = batch(&mnist, &a, 4);
    assert_eq!(logits(&a, &x, false), logits(&b, &x, false));
    assert_ne!(logits(&a, &x, false), logits(&c, &x, false));
    let weights = |n: &Network| -> Vec<Vec<f32>> {
        n.params()
            .iter()
            .map(|p| p.var.flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    assert_eq!(weights(&a), weights(&b), "bit for bit");

    let _ = logits(&c, &x, true); // move the running stats away from their init
    let dir = tempfile::tempdir().unwrap();
    let run = mnist_kit::train::RunDir::new(dir.path());
    run.save_network(&c).unwrap();
    let loaded = mnist_kit::train::Run::open(dir.path()).unwrap().net;
    assert_eq!(loaded.name(), "lenet5-regularized");
    assert_eq!(logits(&c, &x, false), logits(&loaded, &x, false));

    // Loading into another architecture is a clear error.
    let other = Network::preset("lenet5", 0, &Device::Cpu).unwrap();
    let err = other
        .load_weights(dir.path().join("weights.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lenet5") && err.contains("bn1"), "{err}");
    let mlp = Network::preset("dense128", 0, &Device::Cpu).unwrap();
    let err = mlp
        .load_weights(dir.path().join("weights.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dense128") && err.contains("shape"), "{err}");
    // A truncated file is rejected, not half-loaded.
    let path = dir.path().join("weights.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = mnist_kit::train::Run::open(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("safetensors"), "{err}");
}

#[test]
fn configs_round_trip_through_json_and_names_parse() {
    for name in MODEL_NAMES {
        let cfg: ModelConfig = name.parse().unwrap();
        let back = ModelConfig::from_json(&cfg.to_json()).unwrap();
        assert_eq!(cfg, back, "{name}");
    }
    assert!(
        "lenet6"
            .parse::<ModelConfig>()
            .unwrap_err()
            .to_string()
            .contains("lenet5")
    );
    assert!(ModelConfig::from_json(r#"{"kind":"mlp","dropout":1.5}"#).is_err());
    assert!(ModelConfig::from_json("{").is_err());
    let custom =
        ModelConfig::from_json(r#"{"kind":"mlp","hidden":[256,128],"batch_norm":true}"#).unwrap();
    let net = Network::new(&custom, 0, &Device::Cpu).unwrap();
    assert_eq!(
        net.trainable_count(),
        785 * 256 + 257 * 128 + 129 * 10 + 2 * (256 + 128)
    );
}

#[test]
fn a_model_can_come_from_a_json_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide-resnet.json");
    let wide = r#"{"kind":"resnet","channels":[16,48,96],"blocks_per_stage":1,"stem_stride":2,
                   "activation":"relu","dropout":0.0}"#;
    std::fs::write(&path, wide).unwrap();
    let path = path.to_str().unwrap();
    let net = Network::preset(path, 0, &Device::Cpu).unwrap();
    assert_eq!(net.name(), "wide-resnet");
    let default = Network::preset("resnet", 0, &Device::Cpu).unwrap();
    assert!(net.trainable_count() > 2 * default.trainable_count());
    // A missing file names itself; an invalid config says what is wrong.
    let missing = dir.path().join("missing.json");
    let e = ModelConfig::resolve(missing.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("missing.json"), "{e}");
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"kind":"mlp","dropout":1.5}"#,
    )
    .unwrap();
    let e = ModelConfig::resolve(dir.path().join("bad.json").to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("dropout"), "{e}");
}

#[test]
fn the_advanced_mlp_and_the_depth_study_have_the_counted_parameters() {
    use mnist_kit::models::ResNetConfig;
    // 784-512-256-128-10 with BatchNorm (gamma, beta trainable) after each hidden layer:
    // (784*512+512) + 2*512 + (512*256+256) + 2*256 + (256*128+128) + 2*128 + (128*10+10).
    let advanced = (784 * 512 + 512)
        + 2 * 512
        + (512 * 256 + 256)
        + 2 * 256
        + (256 * 128 + 128)
        + 2 * 128
        + (128 * 10 + 10);
    assert_eq!(advanced, 569_226);
    let net = Network::preset("mlp-advanced", 0, &Device::Cpu).unwrap();
    assert_eq!(net.trainable_count(), advanced);
    assert_eq!(net.summary().params, advanced);

    // ResNet, channels 16/32/64, b basic blocks per stage (3x3 convs without bias, BatchNorm
    // gamma+beta after each):
    // stem 3*3*1*16 + 2*16; stage 1: b * (2 * 3*3*16*16 + 2 * 2*16);
    // stage 2: first block 3*3*16*32 + 3*3*32*32 + 2 * 2*32, then (b-1) * (2 * 3*3*32*32 + 2*2*32);
    // stage 3: first block 3*3*32*64 + 3*3*64*64 + 2 * 2*64, then (b-1) * (2 * 3*3*64*64 + 2*2*64);
    // the residual network adds the two 1x1 projection shortcuts with their BatchNorms:
    // (16*32 + 2*32) + (32*64 + 2*64); classifier 64*10 + 10.
    let count = |b: usize, residual: bool| -> usize {
        let stem = 9 * 16 + 2 * 16;
        let s1 = b * (2 * 9 * 16 * 16 + 2 * 2 * 16);
        let s2 = 9 * 16 * 32 + 9 * 32 * 32 + 2 * 2 * 32 + (b - 1) * (2 * 9 * 32 * 32 + 2 * 2 * 32);
        let s3 = 9 * 32 * 64 + 9 * 64 * 64 + 2 * 2 * 64 + (b - 1) * (2 * 9 * 64 * 64 + 2 * 2 * 64);
        let shortcuts = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64);
        stem + s1 + s2 + s3 + if residual { shortcuts } else { 0 } + 64 * 10 + 10
    };
    assert_eq!(count(1, true), 77_754, "the study's ResNet");
    for b in [1, 2, 3] {
        for residual in [true, false] {
            let cfg = ModelConfig::Resnet(ResNetConfig {
                blocks_per_stage: b,
                residual,
                ..Default::default()
            });
            let net = Network::named("resnet", &cfg, 0, &Device::Cpu).unwrap();
            assert_eq!(
                net.trainable_count(),
                count(b, residual),
                "{b} blocks, residual {residual}"
            );
            assert_eq!(net.summary().params, count(b, residual));
        }
    }
}

#[test]
fn the_plain_resnet_has_no_shortcut_and_the_residual_one_uses_it() {
    use mnist_kit::models::ResNetConfig;
    let mnist = Mnist::load_default().unwrap();
    let build = |residual| {
        let cfg = ModelConfig::Resnet(ResNetConfig {
            blocks_per_stage: 2,
            residual,
            ..Default::default()
        });
        Network::named("resnet", &cfg, 7, &Device::Cpu).unwrap()
    };
    let (res, plain) = (build(true), build(false));
    let x = batch(&mnist, &res, 8);
    let set = |net: &Network, pattern: &str, f: &dyn Fn(&Tensor) -> Tensor| {
        for p in net.params().iter().filter(|p| p.name.contains(pattern)) {
            p.var.set(&f(p.var.as_tensor())).unwrap();
        }
    };
    // The residual network reads its projection shortcut: perturbing it changes the output.
    let before = logits(&res, &x, false);
    set(&res, "stage2.0.shortcut.weight", &|t| (t + 0.5).unwrap());
    assert_ne!(logits(&res, &x, false), before);
    // The plain network has no shortcut weights at all.
    assert!(plain.params().iter().all(|p| !p.name.contains("shortcut")));

    // Silence every block's second convolution (its BatchNorm's gamma and beta set to 0):
    // in the plain network nothing reaches the classifier, so every image gets the same
    // logits; in the residual network the identity and projection paths still carry the image.
    for net in [&res, &plain] {
        set(net, "bn2.", &|t| t.zeros_like().unwrap());
    }
    let rows = |net: &Network| -> Vec<Vec<f32>> {
        logits(net, &x, false)
            .chunks(10)
            .map(|c| c.to_vec())
            .collect()
    };
    let p = rows(&plain);
    assert!(p.iter().all(|r| r == &p[0]), "plain: constant output {p:?}");
    let r = rows(&res);
    assert!(
        r.iter().any(|row| row != &r[0]),
        "residual: the image still gets through"
    );
}

#[test]
fn kit_layers_compose_as_candle_modules() {
    use candle_nn::{Module, ModuleT};
    use mnist_kit::models::layers::{Conv2d, Linear};
    let net = Network::preset("dense128", 7, &Device::Cpu).unwrap();
    let w = net.tensors();
    let layer = |n: &str| {
        Linear::from_tensors(
            w[&format!("{n}.weight")].clone(),
            w[&format!("{n}.bias")].clone(),
        )
        .unwrap()
    };
    let seq = candle_nn::seq()
        .add(layer("fc1"))
        .add(candle_nn::Activation::Relu)
        .add(layer("out"));
    let x = Tensor::rand(0f32, 1f32, (5, 784), &Device::Cpu).unwrap();
    let by_seq = seq.forward(&x).unwrap();
    let by_net = x.apply_t(&net, false).unwrap();
    assert_eq!(
        by_seq.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        by_net.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        "a seq() of the network's own layers is the network"
    );
    assert_eq!(ModuleT::forward_t(&net, &x, true).unwrap().dims(), &[5, 10]);

    // A kit convolution next to candle's own, on the same kernel.
    let lenet = Network::preset("lenet5", 7, &Device::Cpu).unwrap();
    let t = lenet.tensors();
    let conv = Conv2d::from_tensors(
        t["conv1.weight"].clone(),
        Some(t["conv1.bias"].clone()),
        1,
        0,
    )
    .unwrap();
    let img = Tensor::rand(0f32, 1f32, (2, 1, 32, 32), &Device::Cpu).unwrap();
    let ours = img.apply(&conv).unwrap();
    let theirs = img
        .conv2d(&t["conv1.weight"], 0, 1, 1, 1)
        .unwrap()
        .broadcast_add(&t["conv1.bias"].reshape((1, 6, 1, 1)).unwrap())
        .unwrap();
    let diff = (ours - theirs)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "kit conv vs candle conv: {diff}");
    // Bad shapes are errors, not panics.
    assert!(Linear::from_tensors(t["conv1.weight"].clone(), t["conv1.bias"].clone()).is_err());
    assert!(Conv2d::from_tensors(t["conv1.weight"].clone(), None, 0, 0).is_err());
}
