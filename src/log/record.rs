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
            let length = usize::try_from(varint(bytes, &mut at)?).unwrap_or(usize::MAX);
            let end = at
                .checked_add(length)
                .filter(|&end| end <= bytes.len())
                .ok_or("a field runs past the end of the record")?;
            let value = &bytes[at..end];
            at = end;
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
            let Some(value) = value else { continue };
            prost::encoding::encode_varint((field << 3) | LENGTH_DELIMITED, &mut out);
            prost::encoding::encode_varint(value.len() as u64, &mut out);
            out.extend_from_slice(value);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_as_its_published_message() {
        let issued = pb::IssuedReceipt {
            receipt: b"receipt".to_vec(),
            batch: 4,
            index: 1,
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
