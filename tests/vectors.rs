//! The contract's test vectors (`proto/focalpoint/v1/vectors.json`): entry hashes, Merkle
//! roots, receipts signed alone and in a batch, and a checkpoint with its cosignature, each
//! with the bytes a verifier in another language must compute. This test recomputes every
//! value with this implementation and verifies every signature, so the vectors and the code
//! cannot drift apart. `FOCALPOINT_WRITE_VECTORS=1 cargo test --test vectors` writes them
//! afresh (new signatures, as ECDSA signs with fresh randomness).

mod common;

use common::*;
use focalpoint::crypto::receipt::{self, ReceiptSigner};
use focalpoint::crypto::{merkle, x509};
use focalpoint::domain::model::Digest;
use focalpoint::pb;
use prost::Message;
use serde_json::{Value, json};

fn hex(bytes: &[u8]) -> String {
    focalpoint::domain::model::hex(bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn path() -> std::path::PathBuf {
    repo().join("proto/focalpoint/v1/vectors.json")
}

fn khm_signer() -> ReceiptSigner {
    let base = repo().join("certs-example/khm");
    let cert = x509::load_certs(&base.join("node.pem")).unwrap();
    let key = x509::load_key(&base.join("node.key")).unwrap();
    ReceiptSigner::new(&cert[0], &key).unwrap()
}

/// An instant inside the example certificates' validity: a day after the KHM node
/// certificate's start, so that vectors written again after the PKI is renewed still verify.
fn signed_at() -> String {
    let cert = x509::load_certs(&repo().join("certs-example/khm/node.pem")).unwrap();
    let (not_before, _) = x509::validity_of(&cert[0]).unwrap();
    let at = time::OffsetDateTime::from_unix_timestamp(not_before + 86_400).unwrap();
    focalpoint::domain::model::format_instant(at)
}

fn receipt(i: u64) -> pb::Receipt {
    pb::Receipt {
        message_id: format!("IDN-20250430-ALERT-{i:04}"),
        envelope_sha256: Digest::of(format!("envelope {i}").as_bytes()).0.to_vec(),
        sender: "IDN".into(),
        receiver: "KHM".into(),
        log_sequence: 40 + i,
        entry_hash: Digest::of(format!("entry {i}").as_bytes()).0.to_vec(),
        stored_at: signed_at(),
    }
}

fn write() -> Value {
    let signer = khm_signer();
    // Entry hashes: SHA-256(0x00 || the LogEntry's encoding).
    // A chain of three: the first names 32 zero bytes as the hash before it.
    let mut previous = focalpoint::log::GENESIS;
    let entries: Vec<Value> = (1..=3u64)
        .map(|sequence| {
            let entry = pb::LogEntry {
                sequence,
                kind: pb::EntryKind::MessageSent as i32,
                peer: "KHM".into(),
                message_id: format!("IDN-{sequence}"),
                content_sha256: Digest::of(&sequence.to_be_bytes()).0.to_vec(),
                previous_hash: previous.0.to_vec(),
                ..Default::default()
            };
            let bytes = entry.encode_to_vec();
            let hash = focalpoint::log::entry_hash(&bytes);
            previous = hash;
            json!({"entry": hex(&bytes), "hash": hex(&hash.0)})
        })
        .collect();
    // Merkle roots over 1 to 7 leaves (RFC 6962 MTH over already hashed leaves).
    let leaves: Vec<Digest> = (0..7u8).map(|i| Digest::of(&[i])).collect();
    let roots: Vec<Value> = (1..=leaves.len())
        .map(|n| {
            json!({
                "leaves": leaves[..n].iter().map(|l| hex(&l.0)).collect::<Vec<_>>(),
                "root": hex(&merkle::root(&leaves[..n]).0),
            })
        })
        .collect();
    // Three receipts under one batch signature.
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| receipt(i).encode_to_vec()).collect();
    let batch = signer
        .sign_batch(bodies.iter().map(|b| receipt::leaf_hash(b)).collect())
        .unwrap();
    let root = batch.tree.root();
    let batched: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let signed = batch.receipt(i, body.clone(), signer.certificate());
            let proof = signed.batch.clone().unwrap();
            json!({
                "receipt": hex(body),
                "leaf": hex(&receipt::leaf_hash(body).0),
                "index": proof.index,
                "size": proof.size,
                "path": proof.path.iter().map(|p| hex(p)).collect::<Vec<_>>(),
                "root": hex(&root.0),
                "signed_message": hex(&[b"focalpoint-receipt-batch-v1\0".as_slice(), &proof.size.to_be_bytes(), &root.0].concat()),
                "signature_scheme": signed.signature_scheme,
                "signature": hex(&signed.signature),
                "signed_receipt": hex(&signed.encode_to_vec()),
            })
        })
        .collect();
    // One receipt signed alone.
    let alone = signer.sign(&receipt(9)).unwrap();
    let single = json!({
        "receipt": hex(&alone.receipt),
        "signed_message": hex(&[b"focalpoint-receipt-v1\0".as_slice(), &alone.receipt].concat()),
        "signature_scheme": alone.signature_scheme,
        "signature": hex(&alone.signature),
        "signed_receipt": hex(&alone.encode_to_vec()),
    });
    // A checkpoint signed by KHM, as it would ask IDN to cosign it.
    let checkpoint = pb::Checkpoint {
        origin: "KHM".into(),
        size: 7,
        root_hash: merkle::root(&leaves).0.to_vec(),
        created_at: signed_at(),
    };
    let signed = signer
        .sign_body(receipt::CHECKPOINT_DOMAIN, checkpoint.encode_to_vec())
        .unwrap();
    // KHM's cosignature of an IDN checkpoint of the same tree.
    let cosignature = pb::Cosignature {
        origin: "IDN".into(),
        size: 7,
        root_hash: merkle::root(&leaves).0.to_vec(),
        witness: "KHM".into(),
        witnessed_at: signed_at(),
    };
    let cosigned = signer
        .sign_body(receipt::COSIGNATURE_DOMAIN, cosignature.encode_to_vec())
        .unwrap();
    json!({
        "about": "focalpoint contract test vectors: see SIGNATURES.md beside this file. Bytes are hex. Signatures verify with signer_certificate, which chains to ca_certificate.",
        "ca_certificate": read(&repo().join("certs-example/khm/ca.pem")),
        "signer_certificate": hex(signer.certificate()),
        "signer": "urn:focalpoint:KHM:node",
        "entry_hashes": entries,
        "merkle_roots": roots,
        "batch_receipts": batched,
        "single_receipt": single,
        "checkpoint": {
            "body": hex(&signed.body),
            "signed_message": hex(&[receipt::CHECKPOINT_DOMAIN, &signed.body].concat()),
            "signature_scheme": signed.signature_scheme,
            "signature": hex(&signed.signature),
        },
        "cosignature": {
            "body": hex(&cosigned.body),
            "signed_message": hex(&[receipt::COSIGNATURE_DOMAIN, &cosigned.body].concat()),
            "signature_scheme": cosigned.signature_scheme,
            "signature": hex(&cosigned.signature),
        },
    })
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key}"))
}

#[test]
fn the_contract_vectors_hold_for_this_implementation() {
    if std::env::var_os("FOCALPOINT_WRITE_VECTORS").is_some() {
        // Written afresh, then checked below like the committed ones.
        let text = serde_json::to_string_pretty(&write()).unwrap();
        std::fs::write(path(), text + "\n").unwrap();
    }
    let v: Value = serde_json::from_str(&read(&path())).unwrap();
    let ca = x509::load_certs(&repo().join("certs-example/khm/ca.pem")).unwrap();
    assert_eq!(
        s(&v, "ca_certificate"),
        read(&repo().join("certs-example/khm/ca.pem"))
    );
    let khm = "KHM".parse().unwrap();

    let entries = v["entry_hashes"].as_array().unwrap();
    assert!(!entries.is_empty());
    let mut previous = focalpoint::log::GENESIS;
    for e in entries {
        let entry = pb::LogEntry::decode(unhex(s(e, "entry")).as_slice()).unwrap();
        assert_eq!(entry.previous_hash, previous.0.to_vec(), "a chain");
        previous = Digest(unhex(s(e, "hash")).try_into().unwrap());
        let hash = focalpoint::log::entry_hash(&unhex(s(e, "entry")));
        assert_eq!(hex(&hash.0), s(e, "hash"));
        let mut prefixed = vec![0u8];
        prefixed.extend(unhex(s(e, "entry")));
        assert_eq!(hex(&Digest::of(&prefixed).0), s(e, "hash"), "0x00 || entry");
    }

    let roots = v["merkle_roots"].as_array().unwrap();
    assert_eq!(roots.len(), 7);
    for r in roots {
        let leaves: Vec<Digest> = r["leaves"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| Digest(unhex(l.as_str().unwrap()).try_into().unwrap()))
            .collect();
        assert_eq!(hex(&merkle::root(&leaves).0), s(r, "root"));
    }

    let batched = v["batch_receipts"].as_array().unwrap();
    assert_eq!(batched.len(), 3);
    for b in batched {
        let body = unhex(s(b, "receipt"));
        let leaf = receipt::leaf_hash(&body);
        assert_eq!(hex(&leaf.0), s(b, "leaf"));
        let mut prefixed = vec![0u8];
        prefixed.extend(&body);
        assert_eq!(
            hex(&Digest::of(&prefixed).0),
            s(b, "leaf"),
            "0x00 || receipt"
        );
        let path: Vec<Digest> = b["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Digest(unhex(p.as_str().unwrap()).try_into().unwrap()))
            .collect();
        let (index, size) = (b["index"].as_u64().unwrap(), b["size"].as_u64().unwrap());
        let root = merkle::root_from_inclusion(index, size, leaf, &path).unwrap();
        assert_eq!(hex(&root.0), s(b, "root"));
        let message = [
            b"focalpoint-receipt-batch-v1\0".as_slice(),
            &size.to_be_bytes(),
            &root.0,
        ]
        .concat();
        assert_eq!(hex(&message), s(b, "signed_message"));
        let signed = pb::SignedReceipt::decode(unhex(s(b, "signed_receipt")).as_slice()).unwrap();
        assert_eq!(hex(&signed.signature), s(b, "signature"));
        assert_eq!(signed.signature_scheme, s(b, "signature_scheme"));
        assert_eq!(hex(&signed.signer_certificate), s(&v, "signer_certificate"));
        let checked = receipt::verify(&signed, &ca, khm).unwrap();
        assert_eq!(checked.encode_to_vec(), body);
    }

    let single = &v["single_receipt"];
    let signed = pb::SignedReceipt::decode(unhex(s(single, "signed_receipt")).as_slice()).unwrap();
    assert!(signed.batch.is_none());
    let message = [b"focalpoint-receipt-v1\0".as_slice(), &signed.receipt].concat();
    assert_eq!(hex(&message), s(single, "signed_message"));
    receipt::verify(&signed, &ca, khm).unwrap();

    let cp = &v["checkpoint"];
    let body = unhex(s(cp, "body"));
    let checkpoint = pb::Checkpoint::decode(body.as_slice()).unwrap();
    assert_eq!(checkpoint.origin, "KHM");
    let message = [receipt::CHECKPOINT_DOMAIN, &body].concat();
    assert_eq!(hex(&message), s(cp, "signed_message"));
    let signed = pb::Signed {
        body,
        signature_scheme: s(cp, "signature_scheme").into(),
        signature: unhex(s(cp, "signature")),
        signer_certificate: unhex(s(&v, "signer_certificate")),
    };
    let at = focalpoint::domain::model::parse_instant(&checkpoint.created_at).unwrap();
    receipt::verify_signed(receipt::CHECKPOINT_DOMAIN, &signed, &ca, khm, at).unwrap();
    let co = &v["cosignature"];
    let body = unhex(s(co, "body"));
    let cosignature = pb::Cosignature::decode(body.as_slice()).unwrap();
    assert_eq!(
        (cosignature.origin.as_str(), cosignature.witness.as_str()),
        ("IDN", "KHM")
    );
    let message = [receipt::COSIGNATURE_DOMAIN, &body].concat();
    assert_eq!(hex(&message), s(co, "signed_message"));
    let cosigned = pb::Signed {
        body,
        signature_scheme: s(co, "signature_scheme").into(),
        signature: unhex(s(co, "signature")),
        signer_certificate: unhex(s(&v, "signer_certificate")),
    };
    let witnessed = focalpoint::domain::model::parse_instant(&cosignature.witnessed_at).unwrap();
    receipt::verify_signed(receipt::COSIGNATURE_DOMAIN, &cosigned, &ca, khm, witnessed).unwrap();
    // A changed byte anywhere in the signed message does not verify.
    let mut forged = signed.clone();
    forged.body[0] ^= 1;
    assert!(receipt::verify_signed(receipt::CHECKPOINT_DOMAIN, &forged, &ca, khm, at).is_err());
}

/// The Merkle code held against an independent implementation of RFC 6962 §2.1 (MTH, PATH
/// and PROOF) in Python's standard library, for every tree of 1 to 20 leaves: roots,
/// every inclusion path, and every consistency proof.
#[test]
fn merkle_trees_agree_with_an_independent_rfc_6962_implementation() {
    const SCRIPT: &str = r#"
import hashlib, json, sys
def h(b): return hashlib.sha256(b).digest()
def k(n):
    p = 1
    while p * 2 < n: p *= 2
    return p
def mth(d):
    if len(d) == 0: return h(b"")
    if len(d) == 1: return d[0]
    s = k(len(d)); return h(b"\x01" + mth(d[:s]) + mth(d[s:]))
def path(m, d):
    if len(d) <= 1: return []
    s = k(len(d))
    return path(m, d[:s]) + [mth(d[s:])] if m < s else path(m - s, d[s:]) + [mth(d[:s])]
def subproof(m, d, b):
    n = len(d)
    if m == n: return [] if b else [mth(d)]
    s = k(n)
    if m <= s: return subproof(m, d[:s], b) + [mth(d[s:])]
    return subproof(m - s, d[s:], False) + [mth(d[:s])]
out = []
for n in range(1, 21):
    d = [h(bytes([0, i])) for i in range(n)]
    out.append({
        "leaves": [x.hex() for x in d],
        "root": mth(d).hex(),
        "paths": [[x.hex() for x in path(m, d)] for m in range(n)],
        "proofs": [[x.hex() for x in subproof(m, d, True)] for m in range(1, n)],
    })
json.dump(out, sys.stdout)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .output()
        .expect("python3 runs the independent implementation");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trees: Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = |v: &Value| Digest(unhex(v.as_str().unwrap()).try_into().unwrap());
    let mut checked = 0;
    for tree in trees.as_array().unwrap() {
        let leaves: Vec<Digest> = tree["leaves"]
            .as_array()
            .unwrap()
            .iter()
            .map(digest)
            .collect();
        let root = merkle::root(&leaves);
        assert_eq!(root, digest(&tree["root"]), "root of {}", leaves.len());
        for (m, expected) in tree["paths"].as_array().unwrap().iter().enumerate() {
            let expected: Vec<Digest> = expected.as_array().unwrap().iter().map(digest).collect();
            assert_eq!(
                merkle::inclusion_proof(m, &leaves),
                expected,
                "path {m} of {}",
                leaves.len()
            );
            let n = leaves.len() as u64;
            assert_eq!(
                merkle::root_from_inclusion(m as u64, n, leaves[m], &expected),
                Some(root)
            );
            checked += 1;
        }
        for (i, expected) in tree["proofs"].as_array().unwrap().iter().enumerate() {
            let old = i + 1;
            let expected: Vec<Digest> = expected.as_array().unwrap().iter().map(digest).collect();
            assert_eq!(
                merkle::consistency_proof(old, &leaves),
                expected,
                "proof {old} of {}",
                leaves.len()
            );
            assert!(merkle::verify_consistency(
                old as u64,
                leaves.len() as u64,
                merkle::root(&leaves[..old]),
                root,
                &expected
            ));
            checked += 1;
        }
    }
    assert!(checked > 300, "checked {checked}");
}
