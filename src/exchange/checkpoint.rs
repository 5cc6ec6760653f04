//! Cosigned checkpoints: each node signs its log head (size and RFC 6962 root) and the other
//! node witnesses it, checking it against the last head it witnessed with a consistency proof,
//! and countersigns. Both log the pair. A node that rewrites or truncates its log after a
//! cosigned checkpoint can no longer prove consistency, and its own audit no longer matches the
//! root the peer signed.

use prost::Message;

use crate::crypto::merkle;
use crate::crypto::receipt::{CHECKPOINT_DOMAIN, COSIGNATURE_DOMAIN, ReceiptError};
use crate::domain::model::{CountryCode, Digest, format_instant, parse_instant};
use crate::exchange::core::Exchange;
use crate::exchange::error::ExchangeError;
use crate::log::{LogError, NewEntry};
use crate::pb;

fn now() -> String {
    format_instant(time::OffsetDateTime::now_utc())
}

fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M, ExchangeError> {
    M::decode(bytes)
        .map_err(|e| ExchangeError::BadRequest(format!("{what} cannot be decoded: {e}")))
}

/// Why a checkpoint entry's content cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("does not decode: {0}")]
    Undecodable(#[from] prost::DecodeError),
    #[error("holds no checkpoint")]
    NoCheckpoint,
    #[error("holds no cosignature")]
    NoCosignature,
}

/// The checkpoint and cosignature held in a checkpoint entry's content.
pub fn open(
    content: &[u8],
) -> Result<(pb::Checkpoint, pb::Cosignature, pb::CosignedCheckpoint), OpenError> {
    let both = pb::CosignedCheckpoint::decode(content)?;
    let checkpoint = pb::Checkpoint::decode(
        both.checkpoint
            .as_ref()
            .ok_or(OpenError::NoCheckpoint)?
            .body
            .as_slice(),
    )?;
    let cosignature = pb::Cosignature::decode(
        both.cosignature
            .as_ref()
            .ok_or(OpenError::NoCosignature)?
            .body
            .as_slice(),
    )?;
    Ok((checkpoint, cosignature, both))
}

/// Signs this node's current log head for `peer` and builds the request that asks it to
/// cosign, with the consistency proof from the last checkpoint `peer` cosigned.
pub async fn prepare(
    exchange: &Exchange,
    peer: CountryCode,
) -> Result<pb::CosignRequest, ExchangeError> {
    let log = exchange.log().clone();
    let previous_size = match log.last_cosigned(peer)? {
        Some(seq) => {
            let content = log.content(seq)?.ok_or_else(|| {
                ExchangeError::Log(LogError::Corrupt {
                    sequence: seq,
                    reason: "checkpoint content is missing".into(),
                })
            })?;
            open(&content)
                .map_err(|e| {
                    ExchangeError::Log(LogError::Corrupt {
                        sequence: seq,
                        reason: e.to_string(),
                    })
                })?
                .0
                .size
        }
        None => 0,
    };
    let (size, _) = log.head()?;
    // Hashing the whole log is heavy: keep it off the async workers.
    let (root, proof) = tokio::task::spawn_blocking(move || -> Result<_, LogError> {
        let leaves = log.leaves(size)?;
        let proof = merkle::consistency_proof(usize::try_from(previous_size).unwrap_or(0), &leaves);
        Ok((merkle::root(&leaves), proof))
    })
    .await
    .map_err(|e| ExchangeError::internal("preparing the checkpoint", e))??;
    let checkpoint = pb::Checkpoint {
        origin: exchange.country().to_string(),
        size,
        root_hash: root.0.to_vec(),
        created_at: now(),
    };
    let signed = exchange
        .signer()
        .sign_body(CHECKPOINT_DOMAIN, checkpoint.encode_to_vec())
        .map_err(|e| ExchangeError::internal("signing this node's checkpoint", e))?;
    Ok(pb::CosignRequest {
        checkpoint: Some(signed),
        previous_size,
        consistency_proof: proof.iter().map(|d| d.0.to_vec()).collect(),
    })
}

/// Witnesses `caller`'s checkpoint: signature, origin, consistency with the last one witnessed.
/// Logs it with this node's cosignature, or logs the refusal.
pub async fn witness(
    exchange: &Exchange,
    caller: CountryCode,
    request: pb::CosignRequest,
) -> Result<pb::Signed, ExchangeError> {
    let anchors = exchange
        .peer_anchors(caller)
        .ok_or_else(|| ExchangeError::UnknownPeer(caller.to_string()))?;
    let signed = request
        .checkpoint
        .ok_or_else(|| ExchangeError::BadRequest("checkpoint: is required".into()))?;
    let checkpoint: pb::Checkpoint = decode(&signed.body, "checkpoint")?;
    let created = parse_instant(&checkpoint.created_at)
        .map_err(|e| ExchangeError::BadRequest(format!("checkpoint.created_at: {e}")))?;
    exchange
        .verifier()
        .verify_signed(CHECKPOINT_DOMAIN, &signed, &anchors, caller, created)?;
    // Presented now: its signer's certificate must not be revoked now.
    exchange
        .peer_revoked(caller)
        .check(&signed.signer_certificate, time::OffsetDateTime::now_utc())
        .map_err(|e| ExchangeError::Receipt(crate::crypto::receipt::ReceiptError::Revoked(e)))?;
    if checkpoint.origin != caller.as_str() {
        return Err(ExchangeError::Forbidden(format!(
            "checkpoint of {} presented by {caller}",
            checkpoint.origin
        )));
    }
    let root = Digest::from_slice(&checkpoint.root_hash)
        .ok_or_else(|| ExchangeError::BadRequest("checkpoint.root_hash: not 32 bytes".into()))?;
    let log = exchange.log();
    if let Some(seq) = log.last_witnessed(caller)? {
        let content = log.content(seq)?.unwrap_or_default();
        let (last, _, _) = open(&content).map_err(|e| {
            ExchangeError::Log(LogError::Corrupt {
                sequence: seq,
                reason: e.to_string(),
            })
        })?;
        let last_root = Digest::from_slice(&last.root_hash).unwrap_or_default();
        let proof: Vec<Digest> = request
            .consistency_proof
            .iter()
            .filter_map(|p| Digest::from_slice(p))
            .collect();
        let problem = if checkpoint.size < last.size {
            Some(format!(
                "log of {caller} has {} entries, fewer than the {} of the checkpoint witnessed at entry {seq}: truncated",
                checkpoint.size, last.size
            ))
        } else if request.previous_size != last.size
            || proof.len() != request.consistency_proof.len()
            || !merkle::verify_consistency(last.size, checkpoint.size, last_root, root, &proof)
        {
            Some(format!(
                "log of {caller} at size {} is not consistent with the checkpoint of size {} witnessed at entry {seq}: rewritten",
                checkpoint.size, last.size
            ))
        } else {
            None
        };
        if let Some(reason) = problem {
            let entry = NewEntry {
                kind: pb::EntryKind::Refusal,
                peer: Some(caller),
                content_digest: Some(Digest::of(&signed.body)),
                reason: reason.clone(),
                ..Default::default()
            };
            log.transact(move |t| t.append(entry)).await?;
            tracing::warn!(peer = %caller, reason, "inconsistent checkpoint refused");
            return Err(ExchangeError::Inconsistent(reason));
        }
    }
    let cosignature = pb::Cosignature {
        origin: checkpoint.origin.clone(),
        size: checkpoint.size,
        root_hash: checkpoint.root_hash.clone(),
        witness: exchange.country().to_string(),
        witnessed_at: now(),
    };
    let cosigned = exchange
        .signer()
        .sign_body(COSIGNATURE_DOMAIN, cosignature.encode_to_vec())
        .map_err(|e| ExchangeError::internal("signing a cosignature", e))?;
    let content = pb::CosignedCheckpoint {
        checkpoint: Some(signed),
        cosignature: Some(cosigned.clone()),
    }
    .encode_to_vec();
    let entry = NewEntry {
        kind: pb::EntryKind::CheckpointWitnessed,
        peer: Some(caller),
        content: Some(content),
        ..Default::default()
    };
    log.transact(move |t| t.append(entry)).await?;
    tracing::info!(peer = %caller, size = checkpoint.size, "checkpoint witnessed");
    Ok(cosigned)
}

/// Checks the peer's cosignature of this node's checkpoint and logs the pair. Returns the
/// checkpoint and where it is logged.
pub async fn accept(
    exchange: &Exchange,
    peer: CountryCode,
    request: pb::CosignRequest,
    cosigned: pb::Signed,
) -> Result<(pb::Checkpoint, u64), ExchangeError> {
    let anchors = exchange
        .peer_anchors(peer)
        .ok_or_else(|| ExchangeError::UnknownPeer(peer.to_string()))?;
    let signed = request
        .checkpoint
        .ok_or_else(|| ExchangeError::BadRequest("checkpoint: is required".into()))?;
    let checkpoint: pb::Checkpoint = decode(&signed.body, "checkpoint")?;
    let cosignature: pb::Cosignature = decode(&cosigned.body, "cosignature")?;
    let at = parse_instant(&cosignature.witnessed_at)
        .map_err(|e| ExchangeError::BadRequest(format!("cosignature.witnessed_at: {e}")))?;
    exchange
        .verifier()
        .verify_signed(COSIGNATURE_DOMAIN, &cosigned, &anchors, peer, at)?;
    exchange
        .peer_revoked(peer)
        .check(
            &cosigned.signer_certificate,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| ExchangeError::Receipt(crate::crypto::receipt::ReceiptError::Revoked(e)))?;
    if cosignature.size != checkpoint.size
        || cosignature.root_hash != checkpoint.root_hash
        || cosignature.origin != checkpoint.origin
        || cosignature.witness != peer.as_str()
    {
        return Err(ReceiptError::Mismatch {
            field: "cosignature",
            found: format!("{} size {}", cosignature.origin, cosignature.size),
            expected: format!("{} size {}", checkpoint.origin, checkpoint.size),
        }
        .into());
    }
    let content = pb::CosignedCheckpoint {
        checkpoint: Some(signed),
        cosignature: Some(cosigned),
    }
    .encode_to_vec();
    let entry = NewEntry {
        kind: pb::EntryKind::CheckpointCosigned,
        peer: Some(peer),
        content: Some(content),
        ..Default::default()
    };
    let appended = exchange.log().transact(move |t| t.append(entry)).await?;
    tracing::info!(peer = %peer, size = checkpoint.size, sequence = appended.sequence, "checkpoint cosigned");
    Ok((checkpoint, appended.sequence))
}
