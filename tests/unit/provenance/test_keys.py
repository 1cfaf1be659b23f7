import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.provenance.envelope import Signer, Verifier
from workers.provenance.keys import (
    ENV_ACTIVE_KID,
    ENV_KEYS,
    ENV_PUBLIC_KEYS,
    KeyRing,
    ProvenanceKeyError,
    generate_key_file,
    seed_b64,
)


def sign_with(keys: KeyRing) -> Signer:
    return Signer(keys, clock=lambda: 1.0, new_id=lambda: "00000000000000aa")


def test_generate_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "keys", "k1")
    assert path == tmp_path / "keys" / "k1.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "k1.pub.pem").exists()
    with pytest.raises(FileExistsError):
        generate_key_file(tmp_path / "keys", "k1")
    ring = KeyRing.from_dir(tmp_path / "keys")
    assert ring.kids == ("k1",) and ring.active_kid == "k1"


def test_from_dir_active_is_last_private_unless_given(tmp_path: Path) -> None:
    for kid in ("2024-01", "2025-06", "2024-12"):
        generate_key_file(tmp_path, kid)
    assert KeyRing.from_dir(tmp_path).active_kid == "2025-06"
    assert KeyRing.from_dir(tmp_path, active_kid="2024-01").active_kid == "2024-01"
    with pytest.raises(ProvenanceKeyError):
        KeyRing.from_dir(tmp_path, active_kid="nope")


def test_from_dir_public_only_verifies_but_cannot_sign_or_mark(tmp_path: Path) -> None:
    private_dir, public_dir = tmp_path / "priv", tmp_path / "pub"
    generate_key_file(private_dir, "k1")
    public_dir.mkdir()
    (public_dir / "k1.pub.pem").write_bytes((private_dir / "k1.pub.pem").read_bytes())
    signer_ring, verifier_ring = KeyRing.from_dir(private_dir), KeyRing.from_dir(public_dir)
    assert verifier_ring.active_kid is None and verifier_ring.private_kids == ()
    env = sign_with(signer_ring).sign(
        model_name="m",
        model_version="1",
        backend="b",
        input_text="i",
        output_text="o",
        policy_version="p",
        decisions=[],
        trace_id="t",
    )
    assert Verifier(verifier_ring).verify_envelope(env).ok
    with pytest.raises(ProvenanceKeyError):
        Signer(verifier_ring)
    with pytest.raises(ProvenanceKeyError):
        verifier_ring.mark_key("k1")


def test_from_dir_rejects_mismatched_public_key_and_junk(tmp_path: Path) -> None:
    generate_key_file(tmp_path, "k1")
    generate_key_file(tmp_path / "other", "k1")
    (tmp_path / "k1.pub.pem").write_bytes((tmp_path / "other" / "k1.pub.pem").read_bytes())
    with pytest.raises(ProvenanceKeyError, match="does not match"):
        KeyRing.from_dir(tmp_path)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "bad.pem").write_text("not a key")
    with pytest.raises(ProvenanceKeyError):
        KeyRing.from_dir(junk)
    with pytest.raises(ProvenanceKeyError):
        KeyRing.from_dir(tmp_path / "missing")


def test_from_env_reads_seeds_and_active_kid() -> None:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    env = {ENV_KEYS: f"a:{seed_b64(a)}, b:{seed_b64(b)}", ENV_ACTIVE_KID: "a"}
    ring = KeyRing.from_env(env)
    assert ring.kids == ("a", "b") and ring.active_kid == "a"
    assert KeyRing.from_env({ENV_KEYS: env[ENV_KEYS]}).active_kid == "b"
    assert ring.mark_key("a") == KeyRing.from_env(env).mark_key("a")  # deterministic from seed
    assert ring.mark_key("a") != ring.mark_key("b")


def test_from_env_public_keys_only() -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes_raw()
    ring = KeyRing.from_env({ENV_PUBLIC_KEYS: f"p:{base64.b64encode(raw).decode()}"})
    assert ring.kids == ("p",) and ring.active_kid is None


@pytest.mark.parametrize(
    "spec",
    ["k1", "k1:not-base64!", f"k1:{base64.b64encode(b'short').decode()}", "bad kid:AAAA"],
)
def test_from_env_rejects_malformed_lists(spec: str) -> None:
    with pytest.raises(ProvenanceKeyError):
        KeyRing.from_env({ENV_KEYS: spec})


def test_from_env_needs_some_key() -> None:
    with pytest.raises(ProvenanceKeyError):
        KeyRing.from_env({})


def test_repr_hides_key_material() -> None:
    key = Ed25519PrivateKey.generate()
    ring = KeyRing.from_spec(f"k:{seed_b64(key)}")
    assert seed_b64(key) not in repr(ring) and "k" in repr(ring)


def test_rotation_old_kid_verifies_new_kid_signs() -> None:
    old = Ed25519PrivateKey.generate()
    before = KeyRing({"2024": old})
    env_old = sign_with(before).sign(
        model_name="m",
        model_version="1",
        backend="b",
        input_text="i",
        output_text="o",
        policy_version="p",
        decisions=[],
        trace_id="t",
    )
    after = KeyRing({"2024": old, "2025": Ed25519PrivateKey.generate()})
    assert after.active_kid == "2025"
    env_new = sign_with(after).sign(
        model_name="m",
        model_version="1",
        backend="b",
        input_text="i",
        output_text="o",
        policy_version="p",
        decisions=[],
        trace_id="t",
    )
    assert env_old.kid == "2024" and env_new.kid == "2025"
    verifier = Verifier(after.public_only())
    assert verifier.verify_envelope(env_old).ok and verifier.verify_envelope(env_new).ok
    assert Verifier(before).verify_envelope(env_new).reason == "unknown_kid"
