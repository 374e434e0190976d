"""Evaluation networks load state dicts with the original key names and shapes (random weights, no real files)."""

from __future__ import annotations

import pytest
import torch

from scadm.weights import MissingWeightsError, load_state_dict


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small CPU machines run these many tiny ops fastest on one thread
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --------------------------------------------------------------------------- expected layouts, written out


def _bn(prefix: str, c: int) -> dict:
    return {
        f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": (),
    }


def torchvision_resnet18_table(with_fc: bool = True) -> dict:
    """torchvision resnet18 state dict: 122 entries."""
    t = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    spec = {1: (64, 64), 2: (64, 128), 3: (128, 256), 4: (256, 512)}
    for layer, (cin, cout) in spec.items():
        for block in (0, 1):
            p = f"layer{layer}.{block}"
            t[f"{p}.conv1.weight"] = (cout, cin if block == 0 else cout, 3, 3)
            t.update(_bn(f"{p}.bn1", cout))
            t[f"{p}.conv2.weight"] = (cout, cout, 3, 3)
            t.update(_bn(f"{p}.bn2", cout))
            if block == 0 and layer > 1:
                t[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                t.update(_bn(f"{p}.downsample.1", cout))
    if with_fc:
        t["fc.weight"], t["fc.bias"] = (1000, 512), (1000,)
    return t


def bisenet_table() -> dict:
    """face-parsing.PyTorch BiSeNet(19): ResNet-18 context path (no fc) + ARMs, heads, FFM, three outputs."""
    t = {f"cp.resnet.{k}": v for k, v in torchvision_resnet18_table(with_fc=False).items()}

    def cbr(p, cin, cout, k):
        return {f"{p}.conv.weight": (cout, cin, k, k), **_bn(f"{p}.bn", cout)}

    for name, cin in (("arm16", 256), ("arm32", 512)):
        t.update(cbr(f"cp.{name}.conv", cin, 128, 3))
        t[f"cp.{name}.conv_atten.weight"] = (128, 128, 1, 1)
        t.update(_bn(f"cp.{name}.bn_atten", 128))
    t.update(cbr("cp.conv_head32", 128, 128, 3))
    t.update(cbr("cp.conv_head16", 128, 128, 3))
    t.update(cbr("cp.conv_avg", 512, 128, 1))
    t.update(cbr("ffm.convblk", 256, 256, 1))
    t["ffm.conv1.weight"] = (64, 256, 1, 1)
    t["ffm.conv2.weight"] = (256, 64, 1, 1)
    for name, cin, mid in (("conv_out", 256, 256), ("conv_out16", 128, 64), ("conv_out32", 128, 64)):
        t.update(cbr(f"{name}.conv", cin, mid, 3))
        t[f"{name}.conv_out.weight"] = (19, mid, 1, 1)
    return t


VGG16_CONVS = {  # torchvision vgg16 `features` index -> (out, in)
    0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
    17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512), 28: (512, 512),
}
LPIPS_LIN = {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}

INCEPTION_SPOT = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def random_state(table: dict, seed: int = 0, scale: float = 0.05) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in table.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(100)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith("running_mean"):
            out[k] = torch.randn(shape, generator=g) * 0.1
        elif k.endswith("bn.weight") or k.endswith("bn1.weight") or k.endswith("bn2.weight") or k.endswith("bn_atten.weight") or k.endswith("downsample.1.weight"):
            out[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            out[k] = torch.randn(shape, generator=g) * scale
    return out


# --------------------------------------------------------------------------- ResNet-18


def test_resnet18_loads_torchvision_layout(tmp_path):
    from scadm.nn.resnet import ResNet18, adapt_torchvision_state_dict

    table = torchvision_resnet18_table()
    assert len(table) == 122
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(random_state(table), path)
    m = ResNet18(in_channels=3, num_classes=1000)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == table
    m.load_state_dict(load_state_dict(path), strict=True)
    assert sum(p.numel() for p in m.parameters()) == 11_689_512
    m.eval()
    x = torch.randn(2, 3, 64, 64)
    feats = m.features(x)
    assert [tuple(f.shape) for f in feats] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    assert m.forward_spatial(x).shape == (2, 512, 2, 2)
    assert m.forward_pooled(x).shape == (2, 512)
    assert m(x).shape == (2, 1000)
    # 18-channel mask encoder without head, initialised from the same file
    enc = ResNet18(in_channels=18, num_classes=None)
    missing, unexpected = enc.load_state_dict(adapt_torchvision_state_dict(load_state_dict(path), enc), strict=False)
    assert not missing and not unexpected
    assert enc(torch.randn(1, 18, 64, 64)).shape == (1, 512)


def test_classifier_init_from_torchvision_file(tmp_path):
    from scadm.eval.classifier import AttributeClassifier

    path = tmp_path / "resnet18-f37072fd.pth"
    state = random_state(torchvision_resnet18_table())
    torch.save(state, path)
    clf = AttributeClassifier(40)
    clf.load_torchvision(path)
    assert torch.equal(clf.backbone.conv1.weight, state["conv1.weight"])
    assert clf(torch.zeros(2, 3, 32, 32)).shape == (2, 40)


# --------------------------------------------------------------------------- Inception


def test_inception_layout_and_forward(tmp_path):
    from scadm.eval.inception import FIDInceptionV3, InceptionFeatures

    ref = FIDInceptionV3()
    model_table = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert len(model_table) == 566
    for k, shape in INCEPTION_SPOT.items():
        assert model_table[k] == shape, k
    assert sum(p.numel() for p in ref.parameters()) == 23_850_960
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(random_state(model_table, scale=0.02), path)
    net = InceptionFeatures(weights_path=path)
    assert not net.training
    imgs = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    # uint8 [0, 255], float [0, 1] and [-1, 1] via .features() give the same features
    f = net(torch.cat([imgs, imgs]))
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    g = torch.cat([net(imgs.float() / 255), net.features(imgs.float() / 127.5 - 1)])
    assert torch.allclose(g, f, atol=1e-4)
    # the folder form of the path works too
    assert InceptionFeatures(weights_path=tmp_path).weights_path == str(path)


def test_inception_rejects_wrong_layout(tmp_path):
    from scadm.eval.inception import FIDInceptionV3, InceptionFeatures

    state = FIDInceptionV3().state_dict()
    del state["fc.bias"]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="missing"):
        InceptionFeatures(weights_path=path)


def test_tf1_bilinear_resize():
    from scadm.eval.inception import resize_bilinear_tf1

    x = torch.arange(4.0).view(1, 1, 1, 4)
    y = resize_bilinear_tf1(x, (1, 8))
    # TF1: source = i * in/out, no half-pixel offset, edge clamped
    assert torch.allclose(y.flatten(), torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.0]))


# --------------------------------------------------------------------------- LPIPS


def _lpips_files(tmp_path):
    vgg = {f"features.{i}.weight": (o, c, 3, 3) for i, (o, c) in VGG16_CONVS.items()}
    vgg.update({f"features.{i}.bias": (o,) for i, (o, c) in VGG16_CONVS.items()})
    vgg.update({"classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)})  # ignored when loading
    vpath, lpath = tmp_path / "vgg16-397923af.pth", tmp_path / "vgg.pth"
    torch.save(random_state(vgg, scale=0.05), vpath)
    lins = {k: torch.rand(s) * 0.1 for k, s in LPIPS_LIN.items()}  # non-negative like the released heads
    torch.save(lins, lpath)
    return vpath, lpath


def test_lpips_loads_and_behaves(tmp_path):
    from scadm.eval.lpips import LPIPS

    vpath, lpath = _lpips_files(tmp_path)
    lp = LPIPS(vpath, lpath)
    assert len([k for k in lp.state_dict() if k.startswith("net.features.")]) == 26
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert torch.allclose(lp(x, x), torch.zeros(2), atol=1e-7)
    d1 = lp(x, (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1))
    d2 = lp(x, (x + 0.5 * torch.randn(x.shape, generator=g)).clamp(-1, 1))
    assert (d1 > 0).all() and (d2 > d1).all()
    # both files found through $SCADM_WEIGHTS
    import os

    old = os.environ.get("SCADM_WEIGHTS")
    os.environ["SCADM_WEIGHTS"] = str(tmp_path)
    try:
        LPIPS()
    finally:
        if old is None:
            del os.environ["SCADM_WEIGHTS"]
        else:
            os.environ["SCADM_WEIGHTS"] = old


# --------------------------------------------------------------------------- BiSeNet


def test_bisenet_layout_and_parse(tmp_path):
    from scadm.models.face_parser import BiSeNet, BiSeNetParser, load_bisenet, load_parser
    from scadm.labels import FACE_PARSING_TO_OFFICIAL

    table = bisenet_table()
    assert len(table) == 191
    assert {k: tuple(v.shape) for k, v in BiSeNet(19).state_dict().items()} == table
    path = tmp_path / "79999_iter.pth"
    torch.save(random_state(table, scale=0.05), path)
    net = load_bisenet(path)
    assert not net.training
    out = net(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in out] == [(1, 19, 64, 64)] * 3
    parser = BiSeNetParser.from_net(net, input_size=64)
    imgs = torch.rand(2, 3, 32, 32) * 2 - 1
    ids = parser.parse(imgs)
    assert ids.shape == (2, 32, 32) and ids.dtype == torch.long
    raw = parser.logits(imgs).argmax(1)
    raw_small = torch.nn.functional.interpolate(raw[:, None].float(), (32, 32), mode="nearest")[:, 0].long()
    assert torch.equal(ids, torch.as_tensor(FACE_PARSING_TO_OFFICIAL)[raw_small])
    assert parser.features(imgs).shape == (2, 256)
    assert isinstance(load_parser(path), BiSeNetParser)


def test_compact_parser_shapes():
    from scadm.models.face_parser import CompactParser

    m = CompactParser(19, 16).eval()
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    assert m(x).shape == (2, 19, 32, 48)
    assert m.parse(x).shape == (2, 32, 48)
    assert m.features(x).shape == (2, 80)
    with pytest.raises(ValueError, match="divisible by 8"):
        m(torch.zeros(1, 3, 30, 32))


# --------------------------------------------------------------------------- training (scadm.train)


def test_parser_and_classifier_training_is_reproducible(tmp_path):
    from safetensors.torch import load_file

    from scadm.data import write_synthetic_dataset
    from scadm.eval.classifier import AttributeClassifier, load_classifier
    from scadm.models.face_parser import CompactParser, load_parser
    from scadm.train.classifier import train_classifier
    from scadm.train.parser import train_parser

    data = write_synthetic_dataset(tmp_path / "data", n=16, size=32, seed=0, test_fraction=0.25, progress=False)
    calls = []
    for run in ("a", "b"):
        train_parser(data, tmp_path / run / "parser", steps=3, batch_size=4, width=8, seed=1, device="cpu",
                     progress=lambda *a: calls.append(a))
        train_classifier(data, tmp_path / run / "clf", steps=2, batch_size=4, seed=1, device="cpu")
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)] * 2 and calls[:3] == calls[3:]
    for f in ("parser/parser.safetensors", "clf/classifier.safetensors"):
        a, b = load_file(str(tmp_path / "a" / f)), load_file(str(tmp_path / "b" / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert isinstance(load_parser(tmp_path / "a" / "parser"), CompactParser)
    assert isinstance(load_classifier(tmp_path / "a" / "clf"), AttributeClassifier)
    with pytest.raises(ValueError, match="--steps"):
        train_parser(data, tmp_path / "c", steps=0)


# --------------------------------------------------------------------------- missing weights


def test_missing_weights_messages(tmp_path, monkeypatch):
    from scadm.eval.inception import InceptionFeatures
    from scadm.eval.lpips import LPIPS
    from scadm.models.face_parser import load_bisenet, load_parser

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SCADM_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match="weights-inception-2015-12-05-6726825d.pth") as exc:
        InceptionFeatures()
    assert "torch-fidelity" in str(exc.value) and isinstance(exc.value, FileNotFoundError)
    with pytest.raises(MissingWeightsError, match="weights-inception-2015-12-05-6726825d.pth"):
        InceptionFeatures(weights_path=tmp_path / "nope.pth")
    with pytest.raises(MissingWeightsError) as exc:
        LPIPS()
    assert "vgg16-397923af.pth" in str(exc.value) and "vgg.pth" in str(exc.value) and "lpips" in str(exc.value)
    with pytest.raises(MissingWeightsError, match="79999_iter.pth"):
        load_bisenet(tmp_path / "79999_iter.pth")
    with pytest.raises(FileNotFoundError, match="79999_iter.pth"):
        load_parser(tmp_path / "missing")
