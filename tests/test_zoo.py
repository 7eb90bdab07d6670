"""The model zoo: manifest, resolver, verified resumable downloads, cache, offline, import, CLI.

Every network test talks to tests.weights_server on 127.0.0.1 through a test manifest
(ANIMEGAN2_MANIFEST); faults are injected per request.
"""

import hashlib
import io
import json
import logging
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from animegan2 import cli, download, zoo
from animegan2.errors import ChecksumError, DownloadError, ManifestError, WeightsError
from tests.hostile import CodeRunningPickle
from tests.manifests import cache, entry
from tests.reference import random_state_dict

pytestmark = pytest.mark.usefixtures("fast_retries")


def _pt_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    torch.save(random_state_dict(seed=seed), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def weights_bytes() -> bytes:
    return _pt_bytes(1)


def assert_equal_state(state, expected):
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


# --- the bundled manifest ---


def test_bundled_manifest_has_the_published_entries():
    specs = zoo.load_manifest(zoo.BUNDLED_MANIFEST)
    assert set(specs) == {
        "hayao", "shinkai", "paprika", "face_paint_512_v1", "face_paint_512_v2", "celeba_distill", "paprika_pytorch",
        "v1-hayao", "v3-hayao", "v3-shinkai", "vgg19",
    }
    assert zoo.get_spec("webtoon").name == "celeba_distill"
    fp2 = specs["face_paint_512_v2"].files[0]
    assert fp2.sha1_git == "d75102f8f201ddaf8dbe6b913b1a97585b55f838"
    assert fp2.urls[0] == "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/face_paint_512_v2.pt"
    assert specs["paprika_pytorch"].files[0].sha1_git == "58086c9db9fc7a9e5c2876ca31b8079599352643"
    assert specs["paprika_pytorch"].meta == zoo.WeightsMeta("animeganv2", "align_corners", 1e-5, 256, "Paprika", "paprika_pytorch", specs["paprika_pytorch"].license)
    hayao = specs["hayao"]
    assert (hayao.format, hayao.upsample, hayao.norm_eps) == ("tf1-checkpoint", "tf", 1e-12)
    assert [f.name for f in hayao.files] == ["Hayao-64.ckpt.index", "Hayao-64.ckpt.data-00000-of-00001"]
    assert hayao.files[1].size == 8_574_208 and hayao.files[1].unverified == ("sha256",)
    assert all(url.startswith("https://") for s in specs.values() for f in s.files for url in f.urls)
    assert all("commercial" in s.license or "MIT" in s.license for s in specs.values())
    # the root file is the package's file
    root = Path(__file__).resolve().parents[1] / "weights_manifest.json"
    assert root.resolve() == zoo.BUNDLED_MANIFEST.resolve()


def test_git_blob_sha1_matches_git_hash_object(tmp_path):
    f = tmp_path / "hello"
    f.write_bytes(b"hello\n")
    assert download.file_digests(f) == {
        "sha1_git": "ce013625030ba8dba906f756967f9e9ca394464a",  # `git hash-object` of "hello\n"
        "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
    }


# --- malformed manifests ---


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda e: e["files"][0].update(name="../evil.pt"), ["'tiny'", "'name'", "../evil.pt"]),
        (lambda e: e["files"][0].update(name="sub/evil.pt"), ["'tiny'", "'name'"]),
        (lambda e: e.pop("license"), ["'tiny'", "'license'", "missing"]),
        (lambda e: e.update(norm_eps="1e-5"), ["'tiny'", "'norm_eps'", "expected float"]),
        (lambda e: e.update(upsample="bicubic"), ["'tiny'", "'upsample'", "bicubic"]),
        (lambda e: e.update(format="onnx"), ["'tiny'", "'format'"]),
        (lambda e: e.update(colour="red"), ["'tiny'", "'colour'", "unknown field"]),
        (lambda e: e["files"][0].update(sha256="abc"), ["'tiny'", "files[0]", "'sha256'"]),
        (lambda e: e["files"][0].update(urls=["http://example.org/x.pt"]), ["'tiny'", "'urls'", "https"]),
        (lambda e: e["files"][0].update(urls=[]), ["'tiny'", "'urls'", "empty"]),
        (lambda e: e["files"][0].update(unverified=["md5"]), ["'tiny'", "'unverified'", "md5"]),
    ],
)
def test_malformed_manifest_names_entry_and_field(manifest, mutate, words):
    spec = entry(["https://example.org/tiny.pt"], b"x")
    mutate(spec)
    manifest(tiny=spec)
    with pytest.raises(ManifestError) as err:
        zoo.load_state_dict("tiny")
    assert all(w in str(err.value) for w in words), str(err.value)


def test_manifest_that_is_not_json_or_has_bad_names(manifest, tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    monkeypatch.setenv("ANIMEGAN2_MANIFEST", str(bad))
    with pytest.raises(ManifestError, match="cannot read the weights manifest"):
        zoo.load_manifest()
    manifest(**{"../up": entry(["https://example.org/a.pt"], b"x")})
    with pytest.raises(ManifestError, match=r"entry '\.\./up'"):
        zoo.load_manifest()
    manifest(a=entry(["https://example.org/a.pt"], b"x", aliases=["b"]), b=entry(["https://example.org/b.pt"], b"x"))
    with pytest.raises(ManifestError, match="'b' already names entry 'a'"):
        zoo.load_manifest()


def test_cache_paths_cannot_leave_the_cache():
    with pytest.raises(WeightsError, match="leave the cache"):
        download.fetch("../outside", [download.FileSpec("a.pt", ("https://example.org/a.pt",))])
    with pytest.raises(WeightsError, match="leave the cache"):
        download.inside(Path("/c"), "x", "..")


# --- local files ---


def test_local_pt_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    sd = random_state_dict(seed=3)
    torch.save(sd, tmp_path / "w.pth")
    state, meta = zoo.load_state_dict(str(tmp_path / "w.pth"))
    assert_equal_state(state, sd)
    assert (meta.upsample, meta.norm_eps, meta.name) == ("align_corners", 1e-5, "w")
    save_file(sd, str(tmp_path / "w.safetensors"), metadata={"upsample": "tf", "norm_eps": "1e-12", "size": "256"})
    g = zoo.load_generator(tmp_path / "w.safetensors")
    assert (g.upsample, g.norm_eps, g.training) == ("tf", 1e-12, False)
    g = zoo.load_generator(tmp_path / "w.safetensors", upsample="half_pixel", norm_eps=1e-5)
    assert (g.upsample, g.norm_eps) == ("half_pixel", 1e-5)


def test_unknown_name_and_missing_path(manifest):
    manifest(tiny=entry(["https://example.org/tiny.pt"], b"x"))
    with pytest.raises(WeightsError, match="no weights named 'nope': known names are tiny"):
        zoo.load_state_dict("nope")
    with pytest.raises(WeightsError, match="does not exist"):
        zoo.load_state_dict(Path("nope.pt"))
    # a string that is plainly a path is reported as a missing file, not as an unknown name
    for text in ("nope.pt", "/no/such/folder", "weights/Hayao-64.ckpt", "v3.onnx"):
        with pytest.raises(WeightsError, match=f"^no weights named '{text}': the file {text} does not exist$"):
            zoo.load_state_dict(text)


def test_files_that_are_not_weights_name_what_to_give(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.pt").write_text("hello")
    for name in ("empty.pt", "notes.pt"):
        with pytest.raises(WeightsError, match=f"^cannot load {tmp_path / name}: not a torch.save file; give a .pt"):
            zoo.load_generator(tmp_path / name)
    (tmp_path / "folder").mkdir()
    with pytest.raises(WeightsError, match="folder without a TF1 checkpoint"):
        zoo.load_generator(str(tmp_path / "folder"))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    evil = CodeRunningPickle(tmp_path / "pwned")
    torch.save({"w": evil}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="refusing to load .*could run code"):
        zoo.load_generator(tmp_path / "evil.pt")
    assert not evil.marker.exists()


def test_wrong_layout_is_a_weights_error(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not an AnimeGANv2 generator"):
        zoo.load_generator(tmp_path / "other.pt")


# --- downloads ---


def test_download_verify_then_cache_hit_without_request(server, manifest, weights_bytes):
    url = server.add("/tiny.pt", weights_bytes)
    manifest(tiny=entry([url], weights_bytes, aliases=["small"], style="test style"))
    state, meta = zoo.load_state_dict("small", progress=False)
    assert_equal_state(state, torch.load(io.BytesIO(weights_bytes), weights_only=True))
    assert meta == zoo.WeightsMeta("animeganv2", "align_corners", 1e-5, 512, "test style", "tiny", "test data")
    assert cache("tiny", "tiny.pt").read_bytes() == weights_bytes
    assert sorted(p.name for p in cache("tiny").iterdir()) == ["tiny.pt"]
    g = zoo.load_generator("tiny", progress=False)
    assert (g.upsample, g.norm_eps) == ("align_corners", 1e-5)
    assert server.gets("/tiny.pt") == [None]


def test_resume_after_connection_cut(server, manifest, weights_bytes):
    url = server.add("/tiny.pt", weights_bytes, ["cut", "ok"])
    manifest(tiny=entry([url], weights_bytes))
    zoo.load_state_dict("tiny", progress=False)
    first, resumed = server.gets("/tiny.pt")
    offset = int(resumed[len("bytes=") : -1])  # what had reached the disk when the connection broke
    assert first is None and resumed == f"bytes={offset}-" and 0 < offset <= len(weights_bytes) // 2
    assert cache("tiny", "tiny.pt").read_bytes() == weights_bytes


def test_range_ignored_restarts_cleanly(server, manifest, weights_bytes):
    url = server.add("/tiny.pt", weights_bytes, ["cut", "norange"])
    manifest(tiny=entry([url], weights_bytes))
    zoo.load_state_dict("tiny", progress=False)
    first, resumed = server.gets("/tiny.pt")
    assert first is None and resumed.startswith("bytes=")
    assert cache("tiny", "tiny.pt").read_bytes() == weights_bytes


def test_server_error_then_success(server, manifest, weights_bytes):
    url = server.add("/tiny.pt", weights_bytes, ["500", "500", "ok"])
    manifest(tiny=entry([url], weights_bytes))
    zoo.load_state_dict("tiny", progress=False)
    assert server.gets("/tiny.pt") == [None, None, None]


def test_permanent_404_falls_through_to_next_mirror(server, manifest, weights_bytes):
    good = server.add("/mirror/tiny.pt", weights_bytes)
    manifest(tiny=entry([server.url("/gone/tiny.pt"), good], weights_bytes))
    zoo.load_state_dict("tiny", progress=False)
    assert server.gets("/gone/tiny.pt") == [None]
    assert server.gets("/mirror/tiny.pt") == [None]


def test_truncated_body_never_reaches_the_cache(server, manifest, weights_bytes, monkeypatch):
    monkeypatch.setattr(download, "RETRIES", 2)
    url = server.add("/tiny.pt", weights_bytes, ["short"])
    manifest(tiny=entry([url], weights_bytes))
    with pytest.raises(DownloadError, match=r"closed after .* bytes \(gave up after 3 attempts\)"):
        zoo.load_state_dict("tiny", progress=False)
    assert not cache("tiny", "tiny.pt").exists()
    assert len(server.gets("/tiny.pt")) == 3


def test_wrong_bytes_raise_checksum_error_and_cache_nothing(server, manifest, weights_bytes):
    other = _pt_bytes(2)
    url = server.add("/tiny.pt", other)
    manifest(tiny=entry([url], weights_bytes, digest=False))
    spec = json.loads(Path(os.environ["ANIMEGAN2_MANIFEST"]).read_text())
    spec["weights"]["tiny"]["files"][0]["sha256"] = expected = hashlib.sha256(weights_bytes).hexdigest()
    Path(os.environ["ANIMEGAN2_MANIFEST"]).write_text(json.dumps(spec))
    with pytest.raises(ChecksumError) as err:
        zoo.load_state_dict("tiny", progress=False)
    message = str(err.value)
    assert expected in message and hashlib.sha256(other).hexdigest() in message and url in message
    assert sorted(p.name for p in cache("tiny").iterdir()) == []


def test_wrong_size_is_a_checksum_error(server, manifest, weights_bytes):
    url = server.add("/tiny.pt", weights_bytes + b"extra")
    manifest(tiny=entry([url], weights_bytes))
    with pytest.raises(ChecksumError, match=f"expected at most {len(weights_bytes):,} bytes \\(its declared size\\), "
                       f"the server announces {len(weights_bytes) + 5:,}; not downloaded"):
        zoo.load_state_dict("tiny", progress=False)
    assert not any(cache("tiny").iterdir())


def test_slow_server_times_out(server, manifest, weights_bytes, monkeypatch):
    monkeypatch.setenv("ANIMEGAN2_TIMEOUT", "0.2")
    monkeypatch.setattr(download, "RETRIES", 1)
    url = server.add("/tiny.pt", weights_bytes, ["slow"], delay=1.0)
    manifest(tiny=entry([url], weights_bytes))
    with pytest.raises(DownloadError, match="timed out.*gave up after 2 attempts"):
        zoo.load_state_dict("tiny", progress=False)
    assert not cache("tiny", "tiny.pt").exists()


def test_insecure_urls_are_refused():
    with pytest.raises(DownloadError, match="only https"):
        zoo.load_state_dict("http://example.org/w.pt")
    with pytest.raises(DownloadError, match="only https"):
        zoo.load_state_dict("ftp://example.org/w.pt")


def test_redirects_are_followed_only_to_accepted_urls(server, manifest, weights_bytes):
    server.add("/real/tiny.pt", weights_bytes)
    manifest(tiny=entry([server.add("/tiny.pt", b"", ["redirect:/real/tiny.pt"])], weights_bytes))
    zoo.load_state_dict("tiny", progress=False)
    assert server.gets("/real/tiny.pt") == [None]
    manifest(other=entry([server.add("/evil.pt", b"", ["redirect:http://10.255.255.1/tiny.pt"])], weights_bytes))
    with pytest.raises(DownloadError, match="refusing to download http://10.255.255.1/tiny.pt: only https"):
        zoo.load_state_dict("other", progress=False)


def _fetch_in_child(name: str) -> str:
    return str(zoo.fetch_weights(name, progress=False))


def test_eight_processes_one_download(server, manifest, weights_bytes):
    url = server.add("/tiny.pt", weights_bytes, ["trickle"], delay=0.4)
    manifest(tiny=entry([url], weights_bytes))
    with multiprocessing.get_context("fork").Pool(8) as pool:
        paths = pool.map(_fetch_in_child, ["tiny"] * 8)
    assert paths == [str(cache("tiny", "tiny.pt"))] * 8
    assert server.gets("/tiny.pt") == [None]
    assert cache("tiny", "tiny.pt").read_bytes() == weights_bytes


def test_plain_url_with_torch_hub_hash_prefix(server, weights_bytes):
    prefix = hashlib.sha256(weights_bytes).hexdigest()[:8]
    url = server.add(f"/w-{prefix}.pt", weights_bytes)
    state, meta = zoo.load_state_dict(url, progress=False)
    assert (meta.upsample, meta.norm_eps, meta.name) == ("align_corners", 1e-5, f"w-{prefix}")
    zoo.load_state_dict(url, progress=False)
    assert server.gets(f"/w-{prefix}.pt") == [None]
    bad = server.add("/w-00000000.pt", weights_bytes)
    with pytest.raises(ChecksumError, match="expected sha256 00000000"):
        zoo.load_state_dict(bad, progress=False)
    zoo.load_state_dict(bad, progress=False, check_hash=False)


def test_trust_on_first_use_pins_and_refuses_a_changed_file(server, manifest, weights_bytes, caplog):
    url = server.add("/tiny.pt", weights_bytes)
    manifest(tiny=entry([url], weights_bytes, digest=False))
    with caplog.at_level(logging.WARNING, logger="animegan2"):
        zoo.load_state_dict("tiny", progress=False)
    digest = hashlib.sha256(weights_bytes).hexdigest()
    assert [r.getMessage() for r in caplog.records] == [
        f"no published digest for tiny/tiny.pt: pinned sha256 {digest} on first use",
        "licence note for tiny: test data",
    ]
    assert cache("pins", "tiny", "tiny.pt.sha256").read_text() == digest + "\n"
    cache("tiny", "tiny.pt").unlink()
    server.add("/tiny.pt", _pt_bytes(2))
    with pytest.raises(ChecksumError, match=f"differs from {digest}, pinned when it was first downloaded"):
        zoo.load_state_dict("tiny", progress=False)
    assert not cache("tiny", "tiny.pt").exists()


# --- offline, import, verify, CLI ---


@pytest.mark.parametrize("var", ["ANIMEGAN2_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_uses_cache_or_explains_import(server, manifest, weights_bytes, monkeypatch, var):
    url = server.add("/tiny.pt", weights_bytes)
    manifest(tiny=entry([url], weights_bytes))
    monkeypatch.setenv(var, "1")
    with pytest.raises(DownloadError, match=f"offline mode.*Fetch {url} elsewhere, then run `animegan2 weights import tiny FILE`"):
        zoo.load_state_dict("tiny", progress=False)
    assert server.gets("/tiny.pt") == []
    monkeypatch.delenv(var)
    zoo.load_state_dict("tiny", progress=False)
    monkeypatch.setenv(var, "1")
    zoo.load_state_dict("tiny", progress=False)
    assert server.gets("/tiny.pt") == [None]


def test_import_verifies_then_loads_offline(manifest, weights_bytes, tmp_path, monkeypatch, capsys):
    manifest(tiny=entry(["https://example.org/tiny.pt"], weights_bytes))
    monkeypatch.setenv("ANIMEGAN2_OFFLINE", "1")
    wrong = tmp_path / "wrong.pt"
    wrong.write_bytes(_pt_bytes(2))
    assert cli.main(["weights", "import", "tiny", str(wrong)]) == 1
    assert "expected sha256" in capsys.readouterr().err
    assert not cache("tiny", "tiny.pt").exists()
    good = tmp_path / "downloaded-elsewhere.pt"
    good.write_bytes(weights_bytes)
    assert cli.main(["weights", "import", "tiny", str(good), "--quiet"]) == 0
    assert cache("tiny", "tiny.pt").read_bytes() == weights_bytes
    zoo.load_generator("tiny")
    assert cli.main(["weights", "path", "tiny"]) == 0
    assert capsys.readouterr().out.strip().endswith(str(cache("tiny", "tiny.pt")))


def test_failed_import_says_it_once_and_leaves_no_partial(manifest, weights_bytes, tmp_path, capsys):
    good, other = _pt_bytes(2), _pt_bytes(3)
    two = entry(["https://example.org/a.pt"], good, name="a.pt")
    two["files"].append(entry(["https://example.org/b.pt"], other, name="b.pt")["files"][0])
    manifest(two=two)
    (tmp_path / "a.pt").write_bytes(good)
    (tmp_path / "b.pt").write_bytes(weights_bytes)
    assert cli.main(["weights", "import", "two", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"animegan2: error: b.pt from {tmp_path / 'b.pt'}: expected sha256 {hashlib.sha256(other).hexdigest()}, "
        f"got {hashlib.sha256(weights_bytes).hexdigest()}\n"
    )
    assert list(cache("two").iterdir()) == []


def test_unwritable_cache_is_one_line(manifest, weights_bytes, monkeypatch, capsys):
    manifest(tiny=entry(["https://example.org/tiny.pt"], weights_bytes))
    monkeypatch.setenv("ANIMEGAN2_HOME", "/proc/animegan2")  # even root cannot create folders there
    assert cli.main(["weights", "download", "tiny"]) == 1
    assert capsys.readouterr().err == (
        "animegan2: error: cannot create the weights cache folder /proc/animegan2/tiny: No such file or directory; "
        "set ANIMEGAN2_HOME to a writable folder\n"
    )


def test_verify_detects_a_cache_file_altered_on_disk(server, manifest, weights_bytes, capsys, caplog):
    url = server.add("/tiny.pt", weights_bytes)
    manifest(tiny=entry([url], weights_bytes), other=entry([server.url("/other.pt")], b"zz"))
    assert cli.main(["weights", "download", "tiny", "-q"]) == 0
    assert cli.main(["weights", "verify"]) == 0
    assert "ok" in capsys.readouterr().out
    data = bytearray(weights_bytes)
    data[1000] ^= 0xFF
    cache("tiny", "tiny.pt").write_bytes(bytes(data))
    assert zoo.verify_cache()[0][:2] == ("tiny", "tiny.pt") and "expected sha256" in zoo.verify_cache()[0][2]
    assert cli.main(["weights", "verify"]) == 1
    assert "tiny/tiny.pt: BAD" in capsys.readouterr().out
    # the resolver never uses the altered file: it fetches it again
    with caplog.at_level(logging.WARNING, logger="animegan2"):
        zoo.load_state_dict("tiny", progress=False)
    assert "cached file altered" in caplog.text
    assert cache("tiny", "tiny.pt").read_bytes() == weights_bytes
    assert server.gets("/tiny.pt") == [None, None]


def test_cli_list_download_all_and_path(server, manifest, weights_bytes, capsys):
    manifest(
        tiny=entry([server.add("/tiny.pt", weights_bytes)], weights_bytes, style="tiny style"),
        other=entry([server.add("/other.pt", weights_bytes)], weights_bytes, aliases=["o"], size=256),
    )
    assert cli.main(["weights", "path", "tiny"]) == 1
    assert "not in the cache" in capsys.readouterr().err
    assert cli.main(["weights", "download", "tiny"]) == 0
    capsys.readouterr()
    assert cli.main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["tiny", "tiny", "style", "512", "torch-state-dict", "cached"]
    assert lines[2].split() == ["other", "test", "256", "torch-state-dict", "-", "o"]
    assert cli.main(["weights", "download", "--all", "-q"]) == 0
    assert server.gets("/other.pt") == [None] and server.gets("/tiny.pt") == [None]
    assert cli.main(["weights", "download", "nope"]) == 1
    capsys.readouterr()
    assert cli.main(["weights", "download", "tiny", "--all"]) == 1
    assert capsys.readouterr().err == "animegan2: error: name the weights to download, or give --all (not both)\n"


def test_output_piped_into_a_reader_that_stops_early_is_no_traceback():
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "animegan2", "weights", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # like `| head -0`: the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert (proc.wait(timeout=60), err) == (1, "")


# --- Hugging Face ---


def test_hf_source_through_a_fake_endpoint(server, manifest, weights_bytes, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", server.url("").rstrip("/"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    server.add("/someone/animegan2-weights/resolve/main/weights/tiny.pt", weights_bytes)
    state, meta = zoo.load_state_dict("hf://someone/animegan2-weights/weights/tiny.pt", progress=False)
    assert_equal_state(state, torch.load(io.BytesIO(weights_bytes), weights_only=True))
    # as a mirror after a 404, in a manifest
    manifest(tiny=entry([server.url("/gone.pt"), "hf://someone/animegan2-weights/weights/tiny.pt"], weights_bytes))
    zoo.load_state_dict("tiny", progress=False)
    assert sorted(p.name for p in cache("tiny").iterdir()) == ["tiny.pt"]
    assert len(server.gets("/someone/animegan2-weights/resolve/main/weights/tiny.pt")) == 2



# --- TF1 checkpoints (the ckpt helper's TensorFlow-made fixture, served on loopback) ---


def tf_entry(server, ckpt, *, data_digest=True, data_body=None):
    """A tf1-checkpoint entry for the fixture: the index without digest (trust on first use)."""
    files = []
    for suffix in (".index", ".data-00000-of-00001"):
        src = Path(str(ckpt.prefix) + suffix)
        body = src.read_bytes() if data_body is None or suffix == ".index" else data_body
        file = {"name": src.name, "urls": [server.add(f"/tf/{src.name}", body)]}
        if suffix != ".index" and data_digest:
            original = src.read_bytes()
            file.update(size=len(original), sha256=hashlib.sha256(original).hexdigest())
        files.append(file)
    return entry([], None, format="tf1-checkpoint", upsample="tf", norm_eps=1e-12, size=256, style="Hayao", files=files)


def _tf_output_matches(model, ckpt):
    x, y = ckpt.outputs[(64, 64)]
    with torch.no_grad():
        out = model(torch.from_numpy(x).permute(0, 3, 1, 2))
    return float((out - torch.from_numpy(y).permute(0, 3, 1, 2)).abs().max())


def test_tf1_entry_without_digest_must_pass_the_crc_check(tf_v2_checkpoint, server, manifest):
    data = bytearray(Path(str(tf_v2_checkpoint.prefix) + ".data-00000-of-00001").read_bytes())
    data[4096] ^= 0x01
    manifest(hayao=tf_entry(server, tf_v2_checkpoint, data_digest=False, data_body=bytes(data)))
    with pytest.raises(ChecksumError, match="hayao: the downloaded files fail their integrity check"):
        zoo.load_state_dict("hayao", progress=False)
    assert sorted(p.name for p in cache("hayao").iterdir()) == []
    assert not cache("pins").exists()


def test_tf1_entry_is_downloaded_pinned_converted_and_cached(tf_v2_checkpoint, server, manifest, caplog, capsys):
    manifest(hayao=tf_entry(server, tf_v2_checkpoint))
    with caplog.at_level(logging.WARNING, logger="animegan2"):
        model = zoo.load_generator("hayao", progress=False)
    assert (model.upsample, model.norm_eps) == ("tf", 1e-12)
    assert _tf_output_matches(model, tf_v2_checkpoint) < 1e-4
    assert [r.getMessage().split(": pinned")[0] for r in caplog.records] == [
        "no published digest for hayao/Hayao-64.ckpt.index",
        "licence note for hayao: test data",
    ]
    (converted,) = cache("converted").glob("hayao-*.safetensors")
    stamp = converted.stat().st_mtime_ns
    state, meta = zoo.load_state_dict("hayao", progress=False)
    assert meta == zoo.WeightsMeta("animeganv2", "tf", 1e-12, 256, "Hayao", "hayao", "test data")
    assert converted.stat().st_mtime_ns == stamp
    assert server.gets("/tf/Hayao-64.ckpt.index") == [None] and server.gets("/tf/Hayao-64.ckpt.data-00000-of-00001") == [None]
    assert cli.main(["weights", "path", "hayao"]) == 0
    assert capsys.readouterr().out.strip() == str(converted)


def test_verify_checks_the_converted_file_of_a_tf1_entry(tf_v2_checkpoint, server, manifest, capsys):
    manifest(hayao=tf_entry(server, tf_v2_checkpoint))
    zoo.load_state_dict("hayao", progress=False)
    (converted,) = cache("converted").glob("hayao-*.safetensors")
    assert cli.main(["weights", "verify"]) == 0
    assert f"hayao/{converted.name}: ok" in capsys.readouterr().out
    data = bytearray(converted.read_bytes())
    data[-5] ^= 0x40  # a weight's bits: the file still parses
    converted.write_bytes(bytes(data))
    assert cli.main(["weights", "verify"]) == 1
    assert f"hayao/{converted.name}: BAD (the converted file {converted} differs from a fresh conversion" in capsys.readouterr().out
    converted.write_bytes(bytes(data[:100]))
    ((_, name, problem),) = [row for row in zoo.verify_cache() if row[1] == converted.name]
    assert problem.startswith(f"cannot read {converted} as safetensors: ") and problem.endswith("converted again on next use")


def test_tf1_local_checkpoint_and_import(tf_v2_checkpoint, server, manifest, monkeypatch):
    for form in (tf_v2_checkpoint.directory, str(tf_v2_checkpoint.prefix), Path(str(tf_v2_checkpoint.prefix) + ".index")):
        model = zoo.load_generator(form)
        assert (model.upsample, model.norm_eps) == ("tf", 1e-12)
    assert _tf_output_matches(model, tf_v2_checkpoint) < 1e-4
    manifest(hayao=tf_entry(server, tf_v2_checkpoint))
    monkeypatch.setenv("ANIMEGAN2_OFFLINE", "1")
    assert cli.main(["weights", "import", "hayao", str(tf_v2_checkpoint.directory), "-q"]) == 0
    zoo.load_generator("hayao")
    assert server.gets("/tf/Hayao-64.ckpt.index") == []


# --- faults a server or the disk can cause (issue 13, items 1-4) ---


def _finishes(fn, seconds: float = 30.0):
    """Run ``fn`` in a thread; return what it raised or returned, failing the test if it hangs."""
    import threading

    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome["value"]


def test_endless_body_stops_at_the_declared_size_and_the_next_mirror_serves(server, manifest, weights_bytes):
    endless = server.add("/endless.pt", weights_bytes, ["endless"])
    good = server.add("/tiny.pt", weights_bytes)
    manifest(tiny=entry([endless, good], weights_bytes))
    state = _finishes(lambda: zoo.load_state_dict("tiny", progress=False))
    assert not isinstance(state, BaseException), state
    assert cache("tiny", "tiny.pt").read_bytes() == weights_bytes
    manifest(tiny=entry([endless], weights_bytes))
    cache("tiny", "tiny.pt").unlink()
    err = _finishes(lambda: zoo.load_state_dict("tiny", progress=False))
    assert isinstance(err, ChecksumError)
    assert str(err) == (
        f"tiny.pt from {endless}: expected at most {len(weights_bytes):,} bytes (its declared size), "
        "the server sent more; stopped there and discarded it"
    )
    assert list(cache("tiny").iterdir()) == []


def test_endless_body_without_a_declared_size_stops_at_the_cap(server, monkeypatch):
    monkeypatch.setattr(download, "MAX_UNDECLARED_BYTES", 300_000)
    url = server.add("/w.pt", b"", ["endless"])
    err = _finishes(lambda: zoo.load_state_dict(url, progress=False))
    assert isinstance(err, ChecksumError)
    assert "expected at most 300,000 bytes (the limit for a file of unknown size), the server sent more" in str(err)
    assert [p for p in cache("urls").rglob("*") if p.is_file() and p.suffix != ".lock"] == []


def test_a_trickle_cannot_hold_a_download_open(server, manifest, weights_bytes, monkeypatch):
    monkeypatch.setenv("ANIMEGAN2_TIMEOUT", "0.5")
    monkeypatch.setattr(download, "RETRIES", 1)
    url = server.add("/tiny.pt", weights_bytes, ["drip"], delay=0.01)  # 100 bytes/s: every read succeeds
    manifest(tiny=entry([url], weights_bytes))
    err = _finishes(lambda: zoo.load_state_dict("tiny", progress=False))
    assert isinstance(err, DownloadError)
    assert str(err).endswith(
        f"{url}: stalled: less than {download.PROGRESS_BYTES} bytes in 0.5 s (ANIMEGAN2_TIMEOUT) (gave up after 2 attempts)"
    )
    assert len(server.gets("/tiny.pt")) == 2


def test_waiting_on_another_process_lock_is_said_and_bounded(server, manifest, weights_bytes, monkeypatch, caplog):
    from filelock import FileLock

    monkeypatch.setenv("ANIMEGAN2_LOCK_TIMEOUT", "0.3")
    manifest(tiny=entry([server.add("/tiny.pt", weights_bytes)], weights_bytes))
    cache().mkdir(parents=True, exist_ok=True)
    lock = cache("tiny.lock")
    with FileLock(str(lock)):  # as another process downloading it would
        with caplog.at_level(logging.WARNING, logger="animegan2"):
            err = _finishes(lambda: zoo.load_state_dict("tiny", progress=False))
    assert caplog.messages == [f"another animegan2 process is downloading tiny (lock {lock}): waiting up to 0.3 s for it"]
    assert isinstance(err, WeightsError) and str(err) == (
        f"gave up after 0.3 s waiting for another process downloading tiny (lock {lock}); "
        "let it finish, or stop it, then try again (ANIMEGAN2_LOCK_TIMEOUT sets the wait)"
    )
    assert server.gets("/tiny.pt") == []
    zoo.load_state_dict("tiny", progress=False)  # once it is released


def test_altered_or_truncated_converted_file_is_converted_again(tf_v2_checkpoint, server, manifest, caplog):
    manifest(hayao=tf_entry(server, tf_v2_checkpoint))
    expected = {k: v.clone() for k, v in zoo.load_state_dict("hayao", progress=False)[0].items()}  # not the file's map
    (converted,) = cache("converted").glob("hayao-*.safetensors")
    record = Path(str(converted) + ".sha256")
    data = bytearray(converted.read_bytes())
    data[-5] ^= 0x40  # a weight's bits: the file still parses
    for altered in (bytes(data), bytes(data[:100])):
        recorded = record.read_text().strip()
        assert recorded == hashlib.sha256(converted.read_bytes()).hexdigest()
        converted.write_bytes(altered)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="animegan2"):
            state, _ = zoo.load_state_dict("hayao", progress=False)
        assert_equal_state(state, expected)
        assert caplog.messages[0].startswith(f"converted cache file {converted}: sha256 ")
        assert caplog.messages[0].endswith(f"differs from {recorded}, recorded at conversion; converting it again from the verified sources")
        assert hashlib.sha256(converted.read_bytes()).hexdigest() == record.read_text().strip()  # recorded anew


def test_cached_url_download_is_pinned_and_checked_at_load(server, weights_bytes, caplog):
    url = server.add("/w.pt", weights_bytes)
    with caplog.at_level(logging.WARNING, logger="animegan2"):
        expected, _ = zoo.load_state_dict(url, progress=False)
    digest = hashlib.sha256(weights_bytes).hexdigest()
    assert any(m.endswith(f"/w.pt: pinned sha256 {digest} on first use") for m in caplog.messages)
    (cached,) = cache("urls").glob("*/w.pt")
    tampered = _pt_bytes(2)
    cached.write_bytes(tampered)
    state, _ = zoo.load_state_dict(url, progress=False)  # fetched again, not used
    assert_equal_state(state, expected)
    assert cached.read_bytes() == weights_bytes and server.gets("/w.pt") == [None, None]


def test_full_disk_is_one_line_saying_where_and_how_much(server, manifest, weights_bytes, monkeypatch, capsys):
    import shutil

    manifest(tiny=entry([server.add("/tiny.pt", weights_bytes)], weights_bytes))
    part = cache("tiny", "tiny.pt.part")
    part.parent.mkdir(parents=True)
    part.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    assert cli.main(["weights", "download", "tiny", "-q"]) == 1
    free = shutil.disk_usage(part.parent).free
    assert capsys.readouterr().err == (
        f"animegan2: error: no space left to write {part}: {len(weights_bytes):,} bytes are needed, {free:,} bytes "
        "are free there; free some space, or set ANIMEGAN2_HOME to a folder on another disk\n"
    )
    part.unlink()
    usage = shutil.disk_usage(part.parent)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    assert cli.main(["weights", "download", "tiny", "-q"]) == 1
    assert capsys.readouterr().err == (
        f"animegan2: error: no space left to write {part}: {len(weights_bytes):,} bytes are needed, 1,000 bytes "
        "are free there; free some space, or set ANIMEGAN2_HOME to a folder on another disk\n"
    )
    assert server.gets("/tiny.pt") == [None]  # the first try's: the second asked for nothing
