//! One entry as the store keeps it (`focalpoint.v1.StoredRecord`): the entry's bytes, its
//! content and, for a received message, the receipt issued for it, in one value under the
//! entry's sequence. A received message is one write of one key beside its message-id index.
//!
//! Records are read without copying: [`View`] borrows each field from the stored bytes, so a
//! scan of the log (verification, the Merkle tree's leaves) hashes what sled holds in place.

use prost::Message;

use crate::domain::model::Digest;
use crate::pb;

/// A stored record's fields, borrowed from its bytes. Every field is length-delimited.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct View<'a> {
    /// The canonical encoding of the `LogEntry`.
    pub(super) entry: &'a [u8],
    /// The content as stored, if held.
    pub(super) content: Option<&'a [u8]>,
    /// An encoded `IssuedReceipt`.
    pub(super) issued: Option<&'a [u8]>,
    /// An encoded `SignedReceipt`, for a message logged before receipts were batched.
    pub(super) issued_signed: Option<&'a [u8]>,
    /// An encoded `PeerReceipt`: a peer's receipt held in parts.
    pub(super) peer_receipt: Option<&'a [u8]>,
}

const ENTRY: u64 = 1;
const CONTENT: u64 = 2;
const ISSUED: u64 = 3;
const ISSUED_SIGNED: u64 = 4;
const PEER_RECEIPT: u64 = 5;
/// Protocol Buffers' wire type of a length-delimited field.
const LENGTH_DELIMITED: u64 = 2;

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes
            .get(*at)
            .ok_or("the record ends inside a field header")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a field header is longer than ten bytes")
}

/// The `length` bytes at `at`, which then moves past them; `None` if they run past the end.
fn take<'a>(bytes: &'a [u8], at: &mut usize, length: u64) -> Option<&'a [u8]> {
    let end = usize::try_from(length)
        .ok()
        .and_then(|length| at.checked_add(length))
        .filter(|&end| end <= bytes.len())?;
    let value = &bytes[*at..end];
    *at = end;
    Some(value)
}

/// Writes `value` as length-delimited field `field`.
fn put(out: &mut Vec<u8>, field: u64, value: &[u8]) {
    prost::encoding::encode_varint((field << 3) | LENGTH_DELIMITED, out);
    prost::encoding::encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

impl<'a> View<'a> {
    /// Reads a stored record. Stored data is never read as a default: a field of no known
    /// number, of another wire type, twice, or an entry missing is an error.
    pub(super) fn parse(bytes: &'a [u8]) -> Result<Self, &'static str> {
        let mut view = View::default();
        let mut seen = 0u8;
        let mut at = 0;
        while at < bytes.len() {
            let tag = varint(bytes, &mut at)?;
            let (field, wire) = (tag >> 3, tag & 7);
            if wire != LENGTH_DELIMITED || !(ENTRY..=PEER_RECEIPT).contains(&field) {
                return Err("the record holds a field of no known kind");
            }
            let bit = 1u8 << field;
            if seen & bit != 0 {
                return Err("the record holds a field twice");
            }
            seen |= bit;
            let length = varint(bytes, &mut at)?;
            let value =
                take(bytes, &mut at, length).ok_or("a field runs past the end of the record")?;
            match field {
                ENTRY => view.entry = value,
                CONTENT => view.content = Some(value),
                ISSUED => view.issued = Some(value),
                ISSUED_SIGNED => view.issued_signed = Some(value),
                _ => view.peer_receipt = Some(value),
            }
        }
        if seen & (1 << ENTRY) == 0 {
            return Err("the record holds no entry");
        }
        Ok(view)
    }

    /// Whether the record keeps the entry's content, whole or in parts.
    pub(super) fn holds_content(&self) -> bool {
        self.content.is_some() || self.peer_receipt.is_some()
    }

    /// The record's canonical encoding, the one `StoredRecord` gives.
    pub(super) fn encode(&self) -> Vec<u8> {
        let fields = [
            (ENTRY, Some(self.entry)),
            (CONTENT, self.content),
            (ISSUED, self.issued),
            (ISSUED_SIGNED, self.issued_signed),
            (PEER_RECEIPT, self.peer_receipt),
        ];
        let size: usize = fields
            .iter()
            .filter_map(|(_, v)| v.map(|v| v.len() + 11))
            .sum();
        let mut out = Vec::with_capacity(size);
        for (field, value) in fields {
            if let Some(value) = value {
                put(&mut out, field, value);
            }
        }
        out
    }
}

/// A peer's batch receipt split into what is its own and what its batch shares.
#[derive(Debug)]
pub(super) struct SplitReceipt {
    pub(super) own: pb::PeerReceipt,
    pub(super) batch: pb::PeerBatch,
    pub(super) certificate: Vec<u8>,
}

/// Splits the content of a received receipt (an encoded `SignedReceipt`), if it is a batch
/// receipt whose parts put back together give exactly the same bytes; `None` keeps it whole.
pub(super) fn split_receipt(content: &[u8]) -> Option<SplitReceipt> {
    let signed = pb::SignedReceipt::decode(content).ok()?;
    let proof = signed.batch?;
    let split = SplitReceipt {
        own: pb::PeerReceipt {
            receipt: signed.receipt,
            batch: Some(proof),
            signature_sha256: Digest::of(&signed.signature).0.to_vec(),
        },
        batch: pb::PeerBatch {
            signature_scheme: signed.signature_scheme,
            signature: signed.signature,
            signer_certificate_sha256: Digest::of(&signed.signer_certificate).0.to_vec(),
        },
        certificate: signed.signer_certificate,
    };
    (join_receipt(&split.own, &split.batch, &split.certificate) == content).then_some(split)
}

/// The received receipt's content put back together from its parts.
pub(super) fn join_receipt(
    own: &pb::PeerReceipt,
    batch: &pb::PeerBatch,
    certificate: &[u8],
) -> Vec<u8> {
    pb::SignedReceipt {
        receipt: own.receipt.clone(),
        signature_scheme: batch.signature_scheme.clone(),
        signature: batch.signature.clone(),
        signer_certificate: certificate.to_vec(),
        batch: own.batch.clone(),
    }
    .encode_to_vec()
}

/// A `Receipt`'s fields, borrowed from its encoding; absent ones empty (or 0).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct ReceiptFields<'a> {
    message_id: &'a [u8],
    envelope_sha256: &'a [u8],
    sender: &'a [u8],
    receiver: &'a [u8],
    log_sequence: u64,
    entry_hash: &'a [u8],
    stored_at: &'a [u8],
}

/// The field numbers of `Receipt`, in order.
const MESSAGE_ID: u64 = 1;
const ENVELOPE_SHA256: u64 = 2;
const SENDER: u64 = 3;
const RECEIVER: u64 = 4;
const LOG_SEQUENCE: u64 = 5;
const ENTRY_HASH: u64 = 6;
const STORED_AT: u64 = 7;
/// Protocol Buffers' wire type of a number.
const VARINT: u64 = 0;

impl<'a> ReceiptFields<'a> {
    /// Reads a `Receipt` in the one form its canonical encoding has: each field at most once,
    /// in order, none empty or 0, every number in as few bytes as it needs, text in UTF-8.
    /// `None` for any other bytes, even those a decoder would read as the same receipt.
    fn read(bytes: &'a [u8]) -> Option<Self> {
        let mut fields = Self::default();
        let mut last = 0;
        let mut at = 0;
        while at < bytes.len() {
            let start = at;
            let tag = varint(bytes, &mut at).ok()?;
            let (field, wire) = (tag >> 3, tag & 7);
            if at - start != 1 || field <= last || field > STORED_AT {
                return None;
            }
            last = field;
            let number_at = at;
            let number = varint(bytes, &mut at).ok()?;
            if number == 0 || at - number_at != prost::encoding::encoded_len_varint(number) {
                return None;
            }
            if field == LOG_SEQUENCE {
                if wire != VARINT {
                    return None;
                }
                fields.log_sequence = number;
                continue;
            }
            if wire != LENGTH_DELIMITED {
                return None;
            }
            let value = take(bytes, &mut at, number)?;
            let text = |value: &'a [u8]| std::str::from_utf8(value).ok().map(str::as_bytes);
            match field {
                MESSAGE_ID => fields.message_id = text(value)?,
                ENVELOPE_SHA256 => fields.envelope_sha256 = value,
                SENDER => fields.sender = text(value)?,
                RECEIVER => fields.receiver = text(value)?,
                ENTRY_HASH => fields.entry_hash = value,
                _ => fields.stored_at = text(value)?,
            }
        }
        Some(fields)
    }

    /// The canonical encoding, which [`Self::read`] reads back as these fields.
    fn encode(&self) -> Vec<u8> {
        let texts = [
            (MESSAGE_ID, self.message_id),
            (ENVELOPE_SHA256, self.envelope_sha256),
            (SENDER, self.sender),
            (RECEIVER, self.receiver),
        ];
        let mut out = Vec::with_capacity(
            texts.iter().map(|(_, v)| v.len() + 2).sum::<usize>()
                + self.entry_hash.len()
                + self.stored_at.len()
                + 16,
        );
        // The canonical encoding leaves out what is empty or 0.
        let put_held = |out: &mut Vec<u8>, field: u64, value: &[u8]| {
            if !value.is_empty() {
                put(out, field, value);
            }
        };
        for (field, value) in texts {
            put_held(&mut out, field, value);
        }
        if self.log_sequence != 0 {
            prost::encoding::encode_varint((LOG_SEQUENCE << 3) | VARINT, &mut out);
            prost::encoding::encode_varint(self.log_sequence, &mut out);
        }
        put_held(&mut out, ENTRY_HASH, self.entry_hash);
        put_held(&mut out, STORED_AT, self.stored_at);
        out
    }

    /// The fields a received message's entry gives, as that entry gives them.
    fn of_entry(entry: &'a pb::LogEntry, hash: &'a Digest) -> Self {
        Self {
            message_id: entry.message_id.as_bytes(),
            envelope_sha256: &entry.content_sha256,
            sender: entry.peer.as_bytes(),
            log_sequence: entry.sequence,
            entry_hash: &hash.0,
            ..Self::default()
        }
    }
}

/// The receipt this node issued for a received message, as its record keeps it: without the
/// fields the message's entry gives (message id, envelope digest, sender, log sequence and entry
/// hash), if `receipt` is a `Receipt` in its canonical form whose every one of them is the
/// entry's. `None` keeps it whole.
pub(super) fn short_receipt(
    receipt: &[u8],
    entry: &pb::LogEntry,
    hash: &Digest,
) -> Option<Vec<u8>> {
    let whole = ReceiptFields::read(receipt)?;
    let given = ReceiptFields::of_entry(entry, hash);
    let short = ReceiptFields {
        receiver: whole.receiver,
        stored_at: whole.stored_at,
        ..ReceiptFields::default()
    };
    let as_given = ReceiptFields {
        receiver: whole.receiver,
        stored_at: whole.stored_at,
        ..given
    };
    (as_given == whole).then(|| short.encode())
}

/// The receipt a record keeps short, whole again: each field the entry gives that the record
/// leaves out is the entry's. The record's bytes must be in the one form [`short_receipt`]
/// writes, so that no other bytes give the same receipt: a field the record keeps that the
/// entry gives the same is refused. One that differs stays, for the receipt's check against
/// its entry to name.
pub(super) fn whole_receipt(
    short: &[u8],
    entry: &pb::LogEntry,
    hash: &Digest,
) -> Result<Vec<u8>, &'static str> {
    let kept = ReceiptFields::read(short).ok_or("it is not in its one stored form")?;
    let given = ReceiptFields::of_entry(entry, hash);
    let mut whole = kept;
    for (kept, given, whole, refused) in [
        (
            kept.message_id,
            given.message_id,
            &mut whole.message_id,
            "it keeps its message id, which its entry gives",
        ),
        (
            kept.envelope_sha256,
            given.envelope_sha256,
            &mut whole.envelope_sha256,
            "it keeps its envelope digest, which its entry gives",
        ),
        (
            kept.sender,
            given.sender,
            &mut whole.sender,
            "it keeps its sender, which its entry gives",
        ),
        (
            kept.entry_hash,
            given.entry_hash,
            &mut whole.entry_hash,
            "it keeps its entry hash, which its entry gives",
        ),
    ] {
        if kept.is_empty() {
            *whole = given;
        } else if kept == given {
            return Err(refused);
        }
    }
    if kept.log_sequence == 0 {
        whole.log_sequence = given.log_sequence;
    } else if kept.log_sequence == given.log_sequence {
        return Err("it keeps its log sequence, which its entry gives");
    }
    Ok(whole.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_as_its_published_message() {
        let issued = pb::IssuedReceipt {
            receipt: b"receipt".to_vec(),
            batch: 4,
            index: 1,
            from_entry: false,
        }
        .encode_to_vec();
        let view = View {
            entry: b"entry",
            content: Some(b""),
            issued: Some(&issued),
            issued_signed: None,
            peer_receipt: None,
        };
        let bytes = view.encode();
        let read = View::parse(&bytes).unwrap();
        assert_eq!(read.entry, b"entry");
        assert_eq!(read.content, Some(&b""[..]), "empty content is still held");
        assert_eq!(read.issued, Some(&issued[..]));
        assert!(read.issued_signed.is_none() && read.peer_receipt.is_none());
        let published = pb::StoredRecord::decode(bytes.as_slice()).unwrap();
        assert_eq!(published.content.as_deref(), Some(&b""[..]));
        assert_eq!(published.encode_to_vec(), bytes);
    }

    #[test]
    fn a_record_that_is_not_one_is_refused() {
        // A LogEntry of the first layout: its first field is a number.
        let old = pb::LogEntry {
            sequence: 1,
            ..Default::default()
        }
        .encode_to_vec();
        assert!(View::parse(&old).is_err());
        assert!(View::parse(&[]).is_err(), "no entry");
        let whole = View {
            entry: b"e",
            ..Default::default()
        }
        .encode();
        assert!(View::parse(&whole[..whole.len() - 1]).is_err(), "cut short");
        let twice = [whole.clone(), whole].concat();
        assert!(View::parse(&twice).is_err(), "a field twice");
    }

    fn received() -> (pb::LogEntry, Digest, pb::Receipt) {
        let entry = pb::LogEntry {
            sequence: 7,
            peer: "IDN".into(),
            message_id: "IDN-2025-0001".into(),
            content_sha256: vec![5; 32],
            ..Default::default()
        };
        let hash = Digest([9; 32]);
        let receipt = pb::Receipt {
            message_id: entry.message_id.clone(),
            envelope_sha256: entry.content_sha256.clone(),
            sender: "IDN".into(),
            receiver: "KHM".into(),
            log_sequence: 7,
            entry_hash: hash.0.to_vec(),
            stored_at: "2025-05-01T08:00:00Z".into(),
        };
        (entry, hash, receipt)
    }

    #[test]
    fn an_issued_receipt_is_kept_without_what_its_entry_gives_and_reads_back_whole() {
        let (entry, hash, receipt) = received();
        let whole = receipt.encode_to_vec();
        let short = short_receipt(&whole, &entry, &hash).expect("it describes its entry");
        assert_eq!(
            pb::Receipt::decode(short.as_slice()).unwrap(),
            pb::Receipt {
                receiver: "KHM".into(),
                stored_at: receipt.stored_at.clone(),
                ..Default::default()
            }
        );
        assert_eq!(whole_receipt(&short, &entry, &hash).unwrap(), whole);
        // Without a time or a receiver, or with a long message id, it reads back as written.
        for changed in [
            pb::Receipt {
                stored_at: String::new(),
                ..receipt.clone()
            },
            pb::Receipt {
                receiver: String::new(),
                ..receipt.clone()
            },
            pb::Receipt {
                message_id: "M".repeat(300),
                ..receipt.clone()
            },
        ] {
            let entry = pb::LogEntry {
                message_id: changed.message_id.clone(),
                ..entry.clone()
            };
            let whole = changed.encode_to_vec();
            let short = short_receipt(&whole, &entry, &hash).unwrap();
            assert_eq!(whole_receipt(&short, &entry, &hash).unwrap(), whole);
        }
    }

    #[test]
    fn an_issued_receipt_that_is_not_its_entrys_or_not_canonical_is_kept_whole() {
        let (entry, hash, receipt) = received();
        let other = pb::Receipt {
            log_sequence: 8,
            ..receipt.clone()
        };
        assert!(short_receipt(&other.encode_to_vec(), &entry, &hash).is_none());
        let other_hash = Digest([1; 32]);
        assert!(short_receipt(&receipt.encode_to_vec(), &entry, &other_hash).is_none());
        // The same receipt with a field given twice decodes alike, but is not these bytes.
        let mut twice = receipt.encode_to_vec();
        twice.extend(
            pb::Receipt {
                receiver: "KHM".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert!(short_receipt(&twice, &entry, &hash).is_none());
        assert!(short_receipt(b"receipt 1", &entry, &hash).is_none());
        // The log sequence written in two bytes where one will do: it decodes the same.
        let whole = receipt.encode_to_vec();
        let at = whole.iter().position(|&b| b == 5 << 3).unwrap();
        assert_eq!(whole[at + 1], 7);
        let longer = [&whole[..=at], &[0x87, 0x00], &whole[at + 2..]].concat();
        assert_eq!(pb::Receipt::decode(longer.as_slice()).unwrap(), receipt);
        assert!(short_receipt(&longer, &entry, &hash).is_none());
        assert!(short_receipt(&whole, &entry, &hash).is_some());
    }

    #[test]
    fn a_receipt_kept_without_its_entrys_fields_has_one_form() {
        let (entry, hash, receipt) = received();
        let keeping = |r: pb::Receipt| whole_receipt(&r.encode_to_vec(), &entry, &hash);
        let short = pb::Receipt {
            receiver: "KHM".into(),
            stored_at: receipt.stored_at.clone(),
            ..Default::default()
        };
        let err = keeping(pb::Receipt {
            sender: "IDN".into(),
            ..short.clone()
        })
        .unwrap_err();
        assert!(err.contains("keeps its sender"), "{err}");
        let err = keeping(pb::Receipt {
            entry_hash: hash.0.to_vec(),
            ..short.clone()
        })
        .unwrap_err();
        assert!(err.contains("keeps its entry hash"), "{err}");
        // One that differs from the entry stays, for the check against the entry to name.
        let back = keeping(pb::Receipt {
            message_id: "KHM-OTHER".into(),
            ..short
        })
        .unwrap();
        let back = pb::Receipt::decode(back.as_slice()).unwrap();
        assert_eq!(back.message_id, "KHM-OTHER");
        assert_eq!(
            back.log_sequence, 7,
            "what is left out is still the entry's"
        );
    }

    #[test]
    fn a_batch_receipt_splits_and_joins_to_the_same_bytes() {
        let signed = pb::SignedReceipt {
            receipt: b"receipt".to_vec(),
            signature_scheme: "ED25519".into(),
            signature: vec![9; 64],
            signer_certificate: vec![3; 300],
            batch: Some(pb::ReceiptBatchProof {
                index: 2,
                size: 5,
                path: vec![vec![1; 32], vec![2; 32]],
            }),
        };
        let bytes = signed.encode_to_vec();
        let split = split_receipt(&bytes).unwrap();
        assert_eq!(
            join_receipt(&split.own, &split.batch, &split.certificate),
            bytes
        );
        let single = pb::SignedReceipt {
            batch: None,
            ..signed
        };
        assert!(
            split_receipt(&single.encode_to_vec()).is_none(),
            "a receipt signed alone is kept whole"
        );
    }
}
