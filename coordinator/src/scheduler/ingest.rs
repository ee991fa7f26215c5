//! Histogram pieces in, results out.
//!
//! Ingest is exact: the lease is checked before anything is decoded; every piece index of a
//! histogram has one slot, so a piece resent under any sequence number is counted once; a
//! histogram is finalized when its last slot fills, by one merge over its pieces (linear in
//! the bytes received); its counts must sum to the split's N, with labels among the data
//! set's 10 classes. Completion checks that every expected histogram is there, naming the
//! first one missing, and publishes all rows in one transaction.
//!
//! A layer's estimates from the job's other estimators (KDE, Rényi, sliced MI) arrive as a
//! chunk of their own with the same sequence, counting and staging rules as a histogram;
//! they are checked row by row against the job's estimators section
//! ([`ibsweep_shared::estimators::EstimatorsSpec::check_layer`]) and become one result row
//! each.

use ibsweep_shared::job::{JobSpec, Split};
use ibsweep_shared::measure::{BinSize, CountProfile, LayerHistogram};
use ibsweep_shared::results::{EstimateColumns, Measurement, MiRow};

use super::{Event, Scheduler};
use super::staging::{self, Area};
use crate::error::{Error, Result};
use crate::ids::{Claim, JobId};
use crate::lifecycle::{JobState, StateKind};
use crate::records::*;
use crate::store::{JobStore, Tree};

/// Both data sets have ten classes.
pub const CLASSES: usize = 10;

/// Most pieces one histogram may be sent in (a histogram of 10^4 samples is a few hundred
/// KiB; pieces are at most 1 MiB).
pub const MAX_PIECES: u32 = 1024;

/// One incoming histogram piece (the domain form of the proto chunk).
#[derive(Debug, Clone)]
pub struct Chunk {
    pub job_id: JobId,
    /// The sender and the lease it holds.
    pub claim: Claim,
    pub sequence: u64,
    pub key: Measurement,
    pub histogram: Vec<u8>,
    pub piece: u32,
    pub pieces: u32,
    /// Instead of a histogram: one layer's estimates from the job's other estimators
    /// (`histogram` is then empty, in one piece).
    pub estimates: Option<Vec<EstimateColumns>>,
}

impl Chunk {
    fn refuse(&self, what: impl std::fmt::Display) -> Error {
        let k = &self.key;
        if self.estimates.is_some() {
            return Error::InvalidArgument(format!(
                "job {}: estimates (epoch {}, {}, layer {} `{}`): {what}",
                self.job_id,
                k.epoch,
                k.split.as_str(),
                k.layer,
                k.layer_name
            ));
        }
        Error::InvalidArgument(format!(
            "job {}: histogram (epoch {}, {}, layer {} `{}`, bin {}) piece {} of {}: {what}",
            self.job_id,
            k.epoch,
            k.split.as_str(),
            k.layer,
            k.layer_name,
            k.bin_size,
            self.piece,
            self.pieces
        ))
    }
}

fn samples(spec: &JobSpec, split: Split) -> u64 {
    u64::from(match split {
        Split::Train => spec.train_size,
        Split::Test => spec.test_size,
    })
}

/// Whether `key` names a histogram this job measures.
fn check_key(spec: &JobSpec, chunk: &Chunk) -> Result<()> {
    let key = &chunk.key;
    if !spec.is_measured_epoch(key.epoch) {
        return Err(chunk.refuse(format_args!("epoch {} is not a measured epoch of this job", key.epoch)));
    }
    if !spec.measure.splits.contains(&key.split) {
        return Err(chunk.refuse(format_args!("split {} is not measured", key.split.as_str())));
    }
    let layers = spec.layers().map_err(|e| Error::InvalidArgument(e.0))?;
    match layers.get((key.layer as usize).wrapping_sub(1)) {
        Some(l) if l.name == key.layer_name => {}
        _ => return Err(chunk.refuse("not a layer of this network")),
    }
    if chunk.estimates.is_some() {
        return Ok(());
    }
    if !BinSize::new(key.bin_size).is_ok_and(|b| spec.measure.bin_sizes.contains(&b)) {
        return Err(chunk.refuse("not one of the job's bin sizes"));
    }
    Ok(())
}

/// A whole histogram as staged: its counts must sum to the split's `n`; the record holds
/// the estimate, the blob the count profile (then, with `keep_histograms`, the raw bytes).
fn finalize(chunk: &Chunk, merged: &LayerHistogram, n: u64, keep_histograms: bool) -> Result<Vec<u8>> {
    let merged_total = merged.checked_total().ok_or_else(|| chunk.refuse("counts overflow"))?;
    if merged_total != n {
        return Err(
            chunk.refuse(format_args!("the pieces' counts sum to {merged_total}, but the split has {n} samples"))
        );
    }
    let profile = CountProfile::from_histogram(merged).to_bytes();
    let estimate = merged.estimate().map_err(|e| chunk.refuse(e))?;
    let staged = StagedRecord { key: chunk.key.clone(), estimate, profile_len: profile.len() as u64 };
    let mut blob = profile;
    if keep_histograms {
        blob.extend(merged.to_bytes());
    }
    Ok(with_blob(&staged, &blob))
}

impl<S: JobStore> Scheduler<S> {
    /// Adds one histogram piece; returns false for a piece already counted. Not durable
    /// until [`Scheduler::flush`].
    pub fn ingest(&self, chunk: &Chunk) -> Result<bool> {
        // The lease first: nothing from a caller without one is decoded.
        let (key, job) = self.txn(&mut |txn| self.locate(txn, chunk.job_id))?;
        job.check(&chunk.claim).map_err(|r| Error::refused(chunk.job_id, r))?;
        if chunk.pieces == 0 || chunk.pieces > MAX_PIECES || chunk.piece >= chunk.pieces {
            return Err(chunk.refuse(format_args!("pieces must satisfy piece < pieces <= {MAX_PIECES}")));
        }
        let spec = self.spec_of(key)?;
        let keep_histograms = spec.measure.keep_histograms;
        check_key(&spec, chunk)?;
        if job.checkpoint.as_ref().is_some_and(|c| chunk.key.epoch <= c.epoch) {
            return Ok(false); // committed with the checkpoint already
        }
        let n = samples(&spec, chunk.key.split);
        if let Some(values) = &chunk.estimates {
            let new = self.ingest_estimates(key, &spec, chunk, values, n)?;
            if new {
                self.events.publish(Event::Measured { sweep_id: key.sweep, job_id: chunk.job_id, epoch: chunk.key.epoch });
            }
            return Ok(new);
        }
        let histogram = LayerHistogram::from_bytes(&chunk.histogram).map_err(|e| chunk.refuse(e))?;
        if histogram.n_labels() != CLASSES {
            return Err(chunk
                .refuse(format_args!("{} label columns; the data set has {CLASSES} classes", histogram.n_labels())));
        }
        let total = histogram.checked_total().ok_or_else(|| chunk.refuse("counts overflow"))?;
        if total > n {
            return Err(chunk.refuse(format_args!("counts sum to {total}, more than the split's {n} samples")));
        }
        let single = if chunk.pieces == 1 { Some(finalize(chunk, &histogram, n, keep_histograms)?) } else { None };
        let hist = Area::live(key, job.attempts).histogram(&chunk.key);
        let hist_key = hist.as_bytes();
        let slot = hist.piece(chunk.piece);
        let entries = histogram.distinct() as u64;
        let new = self.txn(&mut |txn| {
            let (_, job) = self.locate(txn, chunk.job_id)?;
            job.check(&chunk.claim).map_err(|r| Error::refused(chunk.job_id, r))?;
            if txn.get(Tree::Staged, hist_key)?.is_some() || txn.get(Tree::Pieces, &slot)?.is_some() {
                return Ok(false); // this piece index was counted already
            }
            let mut partial = PARTIALS.get(txn, hist_key)?.unwrap_or(PartialRecord {
                key: chunk.key.clone(),
                pieces: chunk.pieces,
                received: 0,
            });
            if partial.pieces != chunk.pieces {
                return Err(chunk.refuse(format_args!("earlier pieces said {} pieces", partial.pieces)));
            }
            partial.received += 1;
            JOBS.put(
                txn,
                &key.to_bytes(),
                &job.piece_received(&chunk.claim).map_err(|r| Error::refused(chunk.job_id, r))?,
            )?;
            if partial.received < partial.pieces {
                txn.insert(Tree::Pieces, &slot, &chunk.histogram)?;
                PARTIALS.put(txn, hist_key, &partial)?;
                return Ok(true);
            }
            // The last piece: one merge over all of them (a histogram in one piece, the
            // usual case, was finalized before the transaction).
            let value = match &single {
                Some(value) => value.clone(),
                None => {
                    let mut merged = histogram.clone();
                    for piece in (0..partial.pieces).filter(|&p| p != chunk.piece) {
                        let other_key = hist.piece(piece);
                        let bytes = txn.get(Tree::Pieces, &other_key)?.ok_or_else(|| Error::Corrupt {
                            tree: "pieces",
                            detail: format!("piece {piece} counted but missing"),
                        })?;
                        let other = LayerHistogram::from_bytes(&bytes)
                            .map_err(|e| Error::Corrupt { tree: "pieces", detail: e.to_string() })?;
                        merged.merge(&other).map_err(|e| chunk.refuse(e))?;
                        txn.remove(Tree::Pieces, &other_key)?;
                    }
                    txn.remove(Tree::Partials, hist_key)?;
                    finalize(chunk, &merged, n, keep_histograms)?
                }
            };
            txn.insert(Tree::Staged, hist_key, &value)?;
            Ok(true)
        })?;
        if new {
            self.metrics.histogram_bytes.inc_by(chunk.histogram.len() as u64);
            self.metrics.histogram_entries.inc_by(entries);
            self.events.publish(Event::Measured { sweep_id: key.sweep, job_id: chunk.job_id, epoch: chunk.key.epoch });
        }
        Ok(new)
    }

    /// Stages one layer's estimates; false when they were staged already.
    fn ingest_estimates(
        &self,
        key: JobKey,
        spec: &JobSpec,
        chunk: &Chunk,
        values: &[EstimateColumns],
        n: u64,
    ) -> Result<bool> {
        if !chunk.histogram.is_empty() || chunk.pieces != 1 {
            return Err(chunk.refuse("estimates travel alone, in one piece, with no histogram bytes"));
        }
        if spec.measure.estimators.expected_rows().is_empty() {
            return Err(chunk.refuse("the job asks for no estimators beyond binning"));
        }
        spec.measure.estimators.check_layer(n, values).map_err(|e| chunk.refuse(e))?;
        let value = with_blob(&StagedEstimates { key: chunk.key.clone(), values: values.to_vec() }, &[]);
        self.txn(&mut |txn| {
            let (_, job) = self.locate(txn, chunk.job_id)?;
            job.check(&chunk.claim).map_err(|r| Error::refused(chunk.job_id, r))?;
            let staged = Area::live(key, job.attempts).estimates(&chunk.key);
            if txn.get(Tree::Staged, staged.as_bytes())?.is_some() {
                return Ok(false);
            }
            JOBS.put(
                txn,
                &key.to_bytes(),
                &job.piece_received(&chunk.claim).map_err(|r| Error::refused(chunk.job_id, r))?,
            )?;
            txn.insert(Tree::Staged, staged.as_bytes(), &value)?;
            Ok(true)
        })
    }

    /// Publishes a finished attempt: every staged histogram becomes a result row, in one
    /// transaction, durable before this returns. Resent by the same lease after success, it
    /// answers the same row count again.
    pub fn complete(&self, claim: &Claim, job_id: JobId, hashes: (&str, &str), pieces: u64) -> Result<u64> {
        let (worker, token) = (claim.worker, claim.token);
        let (key, job) = self.txn(&mut |txn| self.locate(txn, job_id))?;
        if let JobState::Done { token: done_by, rows, .. } = job.state
            && done_by == token
        {
            return Ok(rows);
        }
        job.check(claim).map_err(|r| Error::refused(job_id, r))?;
        let spec = self.spec_of(key)?;
        let attempt = Area::live(key, job.attempts);
        if let Some((_, value)) = self.store.scan_page(Tree::Partials, attempt.as_bytes(), None, 1)?.first() {
            let partial = PARTIALS.decode(value)?;
            let k = &partial.key;
            return Err(Error::FailedPrecondition(format!(
                "job {job_id}: histogram (epoch {}, {}, layer `{}`, bin {}) has {} of its {} pieces; resend the rest",
                k.epoch,
                k.split.as_str(),
                k.layer_name,
                k.bin_size,
                partial.received,
                partial.pieces
            )));
        }
        let received = job.pieces_received();
        if received != pieces {
            return Err(Error::FailedPrecondition(format!(
                "job {job_id}: the worker sent {pieces} histogram pieces but {received} arrived; resend the missing ones"
            )));
        }
        // Histograms committed with a checkpoint, then this attempt's.
        let mut staged = Vec::new();
        for area in [Area::committed(key), attempt] {
            for (k, v) in self.store.scan(Tree::Staged, area.as_bytes())? {
                staged.push((area.suffix(&k).to_vec(), k, v));
            }
        }
        let expected = staging::expected(&spec)?;
        let have: Vec<&[u8]> = staged.iter().map(|(suffix, _, _)| suffix.as_slice()).collect();
        if let Some(missing) = staging::first_missing(&expected, have, None) {
            return Err(Error::FailedPrecondition(format!(
                "job {job_id}: {missing} never arrived; {} of {} are here",
                staged.len(),
                expected.len()
            )));
        }
        let now = self.now_ms();
        let mut results = Vec::with_capacity(staged.len());
        let (sweep_id, job_name) = (key.sweep.to_string(), job_id.to_string());
        for (suffix, k, v) in &staged {
            let result_key = [key.to_bytes().as_slice(), suffix].concat();
            if is_estimates_suffix(suffix) {
                let (record, _): (StagedEstimates, Vec<u8>) = split_blob(Tree::Staged, v)?;
                for (i, c) in record.values.iter().enumerate() {
                    let row = MiRow::estimate(&sweep_id, &job_name, &spec, &record.key, c);
                    let value = with_blob(&ResultRecord { row }, &[]);
                    // The staged entry goes with its first row.
                    let staged_key = (i == 0).then(|| k.clone());
                    results.push((staged_key, estimate_row_key(&result_key, i), value, None));
                }
                continue;
            }
            let (record, blob): (StagedRecord, Vec<u8>) = split_blob(Tree::Staged, v)?;
            let row = MiRow::new(&sweep_id, &job_name, &spec, &record.key, &record.estimate);
            let profile_len = usize::try_from(record.profile_len).unwrap_or(usize::MAX).min(blob.len());
            let raw = blob.get(profile_len..).filter(|r| !r.is_empty()).map(<[u8]>::to_vec);
            results.push((Some(k.clone()), result_key, with_blob(&ResultRecord { row }, &blob[..profile_len]), raw));
        }
        let rows = results.len() as u64;
        let mut index = self.lock();
        let key_bytes = key.to_bytes();
        let done = self.txn(&mut |txn| {
            let job = JOBS.get(txn, &key_bytes)?.ok_or(Error::JobNotFound(job_id))?;
            let deadline = job.lease().map_or(0, |l| l.deadline_ms);
            let Some(mut next) = job.complete(claim, now, rows, hashes).map_err(|r| Error::refused(job_id, r))? else {
                return Ok(None);
            };
            let retired = self.retire_checkpoint(&mut next);
            let mut sweep = self.sweep(txn, key.sweep)?;
            for (staged_key, result_key, value, raw) in &results {
                txn.insert(Tree::Results, result_key, value)?;
                if let Some(raw) = raw {
                    txn.insert(Tree::Histograms, result_key, raw)?;
                }
                if let Some(staged_key) = staged_key {
                    txn.remove(Tree::Staged, staged_key)?;
                }
            }
            txn.remove(Tree::Active, &token_key(token))?;
            sweep.counts.apply(StateKind::Running, StateKind::Done, 1)?;
            if let JobState::Done { seconds, .. } = next.state {
                sweep.done_seconds += seconds;
            }
            JOBS.put(txn, &key_bytes, &next)?;
            SWEEPS.put(txn, key.sweep.as_bytes(), &sweep)?;
            if let Some(mut w) = WORKERS.get(txn, worker.as_bytes())? {
                w.job = None;
                w.last_seen_ms = now;
                WORKERS.put(txn, worker.as_bytes(), &w)?;
            }
            Ok(Some((deadline, retired)))
        })?;
        if let Some((deadline, _)) = &done {
            index.deadlines.remove(&(*deadline, token, key));
        }
        drop(index);
        self.flush()?;
        if let Some((_, retired)) = &done {
            self.forget_retired(key, retired.clone(), true)?;
        }
        if done.is_some() {
            self.metrics.jobs_completed.inc();
            self.events.publish(Event::job(key.sweep, job_id, StateKind::Done));
        }
        Ok(rows)
    }
}
