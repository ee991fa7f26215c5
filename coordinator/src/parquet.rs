//! Result rows as Parquet, for pandas, polars and pyarrow: `coordinator results --out
//! FILE.parquet` and the HTTP API's `results.parquet`.
//!
//! The columns are the CSV contract's ([`CSV_HEADER`]), in its order and under its names,
//! but typed: counts are unsigned integers, estimates are doubles, the enums are strings as
//! CSV writes them, and every column CSV can leave empty is nullable. So a file read with
//! `pd.read_parquet` and the CSV read with `pd.read_csv` hold the same frame.
//!
//! Rows arrive page by page ([`ParquetRows::write`]) and leave in row groups of
//! [`ROW_GROUP`] rows, so a streamed export holds one row group in memory, not the sweep.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ibsweep_shared::results::{MiRow, SigmaRule};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

#[cfg(doc)]
use ibsweep_shared::results::CSV_HEADER;

/// Rows per row group: large enough for good compression and fast scans, small enough that
/// a streamed download sends bytes every few pages and holds little.
pub const ROW_GROUP: usize = 65_536;

/// One column: its CSV name, its type, whether CSV can leave it empty, and how to build it
/// from a page of rows.
struct Column {
    name: &'static str,
    ty: DataType,
    nullable: bool,
    build: fn(&[MiRow]) -> ArrayRef,
}

fn text(rows: &[MiRow], f: impl Fn(&MiRow) -> &str) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
}

fn maybe_text<'a>(rows: &'a [MiRow], f: impl Fn(&'a MiRow) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn u32s(rows: &[MiRow], f: impl Fn(&MiRow) -> u32) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(rows.iter().map(f)))
}

fn maybe_u32s(rows: &[MiRow], f: impl Fn(&MiRow) -> Option<u32>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<UInt32Array>())
}

fn u64s(rows: &[MiRow], f: impl Fn(&MiRow) -> u64) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(rows.iter().map(f)))
}

fn maybe_u64s(rows: &[MiRow], f: impl Fn(&MiRow) -> Option<u64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<UInt64Array>())
}

fn f64s(rows: &[MiRow], f: impl Fn(&MiRow) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
}

fn maybe_f64s(rows: &[MiRow], f: impl Fn(&MiRow) -> Option<f64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Float64Array>())
}

/// As CSV writes it (serde's lowercase names).
fn rule(rule: Option<SigmaRule>) -> Option<&'static str> {
    rule.map(|r| match r {
        SigmaRule::Fixed => "fixed",
        SigmaRule::Median => "median",
        SigmaRule::Alignment => "alignment",
    })
}

macro_rules! column {
    ($name:ident, $ty:expr, $nullable:expr, $build:expr) => {
        Column { name: stringify!($name), ty: $ty, nullable: $nullable, build: $build }
    };
}

/// In [`CSV_HEADER`]'s order (a test holds them together).
fn columns() -> [Column; 37] {
    use DataType::{Float64 as F64, UInt32 as U32, UInt64 as U64, Utf8};
    [
        column!(sweep_id, Utf8, false, |r| text(r, |r| &r.sweep_id)),
        column!(job_id, Utf8, false, |r| text(r, |r| &r.job_id)),
        column!(dataset, Utf8, false, |r| text(r, |r| r.dataset.as_str())),
        column!(width, U32, false, |r| u32s(r, |r| r.width)),
        column!(depth, U32, false, |r| u32s(r, |r| r.depth)),
        column!(kernel, U32, false, |r| u32s(r, |r| r.kernel)),
        column!(pooling, Utf8, false, |r| text(r, |r| r.pooling.as_str())),
        column!(fc, Utf8, false, |r| text(r, |r| &r.fc)),
        column!(activation, Utf8, false, |r| text(r, |r| r.activation.as_str())),
        column!(seed, U64, false, |r| u64s(r, |r| r.seed)),
        column!(epoch, U32, false, |r| u32s(r, |r| r.epoch)),
        column!(split, Utf8, false, |r| text(r, |r| r.split.as_str())),
        column!(layer, U32, false, |r| u32s(r, |r| r.layer)),
        column!(layer_name, Utf8, false, |r| text(r, |r| &r.layer_name)),
        column!(estimator, Utf8, false, |r| text(r, |r| r.estimator.as_str())),
        column!(bin_size, F64, true, |r| maybe_f64s(r, |r| r.bin_size)),
        column!(n, U64, false, |r| u64s(r, |r| r.n)),
        column!(distinct, U64, true, |r| maybe_u64s(r, |r| r.distinct)),
        column!(h_t, F64, true, |r| maybe_f64s(r, |r| r.h_t)),
        column!(i_xt, F64, true, |r| maybe_f64s(r, |r| r.i_xt)),
        column!(h_t_given_y, F64, true, |r| maybe_f64s(r, |r| r.h_t_given_y)),
        column!(i_yt, F64, false, |r| f64s(r, |r| r.i_yt)),
        column!(h_y, F64, true, |r| maybe_f64s(r, |r| r.h_y)),
        column!(loss, F64, false, |r| f64s(r, |r| r.loss)),
        column!(accuracy, F64, false, |r| f64s(r, |r| r.accuracy)),
        column!(h_x, F64, true, |r| maybe_f64s(r, |r| r.h_x)),
        column!(i_yt_stderr, F64, true, |r| maybe_f64s(r, |r| r.i_yt_stderr)),
        column!(noise_variance, F64, true, |r| maybe_f64s(r, |r| r.noise_variance)),
        column!(relative_noise, F64, true, |r| maybe_f64s(r, |r| r.relative_noise)),
        column!(alpha, F64, true, |r| maybe_f64s(r, |r| r.alpha)),
        column!(sigma, F64, true, |r| maybe_f64s(r, |r| r.sigma)),
        column!(sigma_rule, Utf8, true, |r| maybe_text(r, |r| rule(r.sigma_rule))),
        column!(input_sigma, F64, true, |r| maybe_f64s(r, |r| r.input_sigma)),
        column!(input_sigma_rule, Utf8, true, |r| maybe_text(r, |r| rule(r.input_sigma_rule))),
        column!(projections, U32, true, |r| maybe_u32s(r, |r| r.projections)),
        column!(k, U32, true, |r| maybe_u32s(r, |r| r.k)),
        column!(sample_hash, Utf8, true, |r| maybe_text(r, |r| r.sample_hash.as_deref())),
    ]
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(columns().into_iter().map(|c| Field::new(c.name, c.ty, c.nullable)).collect::<Vec<_>>()))
}

/// The rows of one page as a record batch.
fn batch(schema: &SchemaRef, rows: &[MiRow]) -> Result<RecordBatch, ParquetError> {
    let arrays = columns().iter().map(|c| (c.build)(rows)).collect();
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

/// A Parquet file being written, one page of rows at a time.
#[derive(Debug)]
pub struct ParquetRows<W: Write + Send> {
    schema: SchemaRef,
    writer: ArrowWriter<W>,
}

impl<W: Write + Send> ParquetRows<W> {
    pub fn new(sink: W) -> Result<ParquetRows<W>, ParquetError> {
        let schema = schema();
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .set_created_by(format!("ibsweep {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = ArrowWriter::try_new(sink, Arc::clone(&schema), Some(properties))?;
        Ok(ParquetRows { schema, writer })
    }

    pub fn write(&mut self, rows: &[MiRow]) -> Result<(), ParquetError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.writer.write(&batch(&self.schema, rows)?)
    }

    /// The sink, for taking out the bytes of the row groups finished so far while the file
    /// streams ([`ParquetRows::take_written`]).
    fn sink(&mut self) -> Result<&mut W, ParquetError> {
        self.writer.sync()?;
        Ok(self.writer.inner_mut())
    }

    /// Writes the footer and gives the sink back.
    pub fn finish(self) -> Result<W, ParquetError> {
        self.writer.into_inner().and_then(|mut w| {
            w.flush()?;
            Ok(w)
        })
    }
}

impl ParquetRows<Vec<u8>> {
    /// The bytes of the row groups finished since the last call. Taking them out of the
    /// buffer is safe: the writer counts offsets itself and never reads back what it wrote.
    pub fn take_written(&mut self) -> Result<Vec<u8>, ParquetError> {
        Ok(std::mem::take(self.sink()?))
    }
}

/// Writes `rows` to a Parquet file at `path`.
pub fn write_file(path: &std::path::Path, rows: &[MiRow]) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out = ParquetRows::new(std::io::BufWriter::new(file)).map_err(std::io::Error::other)?;
    for page in rows.chunks(ROW_GROUP) {
        out.write(page).map_err(std::io::Error::other)?;
    }
    out.finish().map_err(std::io::Error::other)?.into_inner().map_err(|e| e.into_error())?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibsweep_shared::results::{CSV_HEADER, read_csv};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn columns_are_the_csv_contract_in_its_order() {
        let names: Vec<&str> = columns().iter().map(|c| c.name).collect();
        assert_eq!(names.join(","), CSV_HEADER);
    }

    /// Every estimator's rows, streamed in pages with the bytes taken out as they come (as
    /// the HTTP API does), read back whole: the same values, nulls where CSV is empty.
    #[test]
    fn streamed_pages_read_back_as_the_rows() {
        let rows = read_csv(include_str!("../../docs/estimators/results.csv").as_bytes()).unwrap();
        let mut rows: Vec<MiRow> = rows.iter().cycle().take(3 * ROW_GROUP / 2).cloned().collect();
        rows[0].sweep_id = "ünïcode".into();
        let mut out = ParquetRows::new(Vec::new()).unwrap();
        let mut file = Vec::new();
        let mut pieces = 0;
        for page in rows.chunks(2_000) {
            out.write(page).unwrap();
            let bytes = out.take_written().unwrap();
            pieces += usize::from(!bytes.is_empty());
            file.extend(bytes);
        }
        assert!(pieces >= 2, "row groups leave while the rows are still coming");
        file.extend(out.finish().unwrap());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        std::fs::write(&path, &file).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let schema = schema();
        let mut at = 0;
        for read in reader.build().unwrap() {
            let read = read.unwrap();
            assert_eq!(read, batch(&schema, &rows[at..at + read.num_rows()]).unwrap());
            at += read.num_rows();
        }
        assert_eq!(at, rows.len());
        let nulls = batch(&schema, &rows[..100]).unwrap();
        let sliced_rows = rows[..100].iter().filter(|r| r.i_xt.is_none()).count();
        assert!(sliced_rows > 0);
        assert_eq!(nulls.column_by_name("i_xt").unwrap().null_count(), sliced_rows);
    }

    #[test]
    fn a_file_of_no_rows_is_still_a_parquet_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.parquet");
        write_file(&path, &[]).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.schema().fields().len(), 37);
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    }
}
