//! `coordinator plot`: information planes, MI paths and per-parameter comparisons, drawn
//! with plotters (pure Rust; PNG or SVG).
//!
//! Rows that differ only in `seed` are one *point* of the grid: plotted as the mean over
//! seeds, with a min-max band on the MI paths (the paper has one seed per figure).
//!
//! Each estimator setting (binning at a bin size, a KDE bound at a noise variance, Rényi at
//! an α and σ, sliced MI) gets figures of its own, named by it; sliced MI has no I(X;T), so
//! it gets MI paths of I(Y;T) only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ibsweep_shared::job::Split;
use ibsweep_shared::results::{Axis, Estimator, MiRow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};

/// Image format of the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormat {
    Png,
    Svg,
}

/// Which figures to draw; `coordinator plot --only` picks some, the default is all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Kind {
    /// `plane-*`: one information plane per grid point.
    Planes,
    /// `paths-*`: I(X;T) and I(Y;T) against epoch per grid point (min-max band over seeds).
    Paths,
    /// `compare-*`: the planes of one swept parameter side by side.
    Compare,
    /// `bins-*`: MI at the last epoch against bin size, for points measured at several sizes.
    Bins,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Planes, Kind::Paths, Kind::Compare, Kind::Bins];
}

/// Figures that cannot be drawn; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlotError(String);

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// plotters draws text with a TrueType font we hand it; `IBSWEEP_FONT` overrides the search.
pub fn register_font() -> Result<(), PlotError> {
    let candidates: Vec<PathBuf> = std::env::var_os("IBSWEEP_FONT")
        .map(PathBuf::from)
        .into_iter()
        .chain(FONT_PATHS.iter().map(PathBuf::from))
        .collect();
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(PlotError(format!(
            "no TrueType font found (looked at {}); install Debian's fonts-dejavu-core or set IBSWEEP_FONT to a .ttf file",
            FONT_PATHS.join(", ")
        )));
    };
    let bytes: &'static [u8] =
        Box::leak(std::fs::read(path).map_err(|e| PlotError(format!("{}: {e}", path.display())))?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| PlotError(format!("{}: not a usable TrueType font", path.display())))
}

/// Parameters that identify a point of the grid (everything but the seed).
fn point_of(r: &MiRow) -> Point {
    Axis::ALL.iter().map(|a| (a.name(), a.value(r))).collect()
}

fn label(point: &[(&'static str, String)], skip: &str) -> String {
    point
        .iter()
        .filter(|(k, _)| *k != skip)
        .map(|(k, v)| match *k {
            "dataset" | "activation" => v.clone(),
            "fc" if v == "none" => "no fc".into(),
            _ => format!("{k} {v}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn slug(point: &[(&'static str, String)], skip: &str) -> String {
    point
        .iter()
        .filter(|(k, _)| *k != skip)
        .map(|(k, v)| format!("{}{}", &k[..1], v))
        .collect::<Vec<_>>()
        .join("-")
        .replace(['/', ' '], "_")
}

/// Seed statistics of one (layer, epoch).
#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    mean: f64,
    min: f64,
    max: f64,
}

fn stat(values: &[f64]) -> Stat {
    let n = values.len() as f64;
    Stat {
        mean: values.iter().sum::<f64>() / n,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// One grid point at one split and bin size: per layer, per epoch, I(X;T) and I(Y;T) over seeds.
#[derive(Debug, Clone)]
struct Curves {
    point: Vec<(&'static str, String)>,
    seeds: usize,
    /// (layer index, layer name) -> epoch -> (I(X;T), I(Y;T))
    layers: BTreeMap<(u32, String), BTreeMap<u32, (Stat, Stat)>>,
    log2_n: f64,
    h_y: f64,
    /// False for sliced MI, which estimates I(Y;T) only.
    has_i_xt: bool,
}

/// Both data sets have ten balanced classes: the I(Y;T) ceiling where rows carry no H(Y).
const LOG2_CLASSES: f64 = std::f64::consts::LOG2_10;

/// The estimator setting a row's figures are drawn for, as (title text, file-name part).
/// Binning keeps the names it always had (`b0.67`).
fn series(r: &MiRow) -> (String, String) {
    match r.binning() {
        Some(b) => (format!("bin {}", b.bin_size), format!("b{}", b.bin_size)),
        None => {
            let setting = r.setting();
            let file: String = setting
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    '=' => None,
                    c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => Some(c),
                    _ => Some('_'),
                })
                .collect();
            (setting, file)
        }
    }
}

/// Per (layer index, name), per epoch: the I(X;T) and I(Y;T) of every seed.
type SeedValues = BTreeMap<(u32, String), BTreeMap<u32, (Vec<f64>, Vec<f64>)>>;

/// A grid point's parameters (all but the seed).
type Point = Vec<(&'static str, String)>;

fn curves(rows: &[&MiRow]) -> Curves {
    let mut raw: SeedValues = BTreeMap::new();
    let mut seeds = BTreeSet::new();
    for r in rows {
        seeds.insert(r.seed);
        let e = raw.entry((r.layer, r.layer_name.clone())).or_default().entry(r.epoch).or_default();
        e.0.push(r.i_xt.unwrap_or(0.0));
        e.1.push(r.i_yt);
    }
    let h_y: Vec<f64> = rows.iter().filter_map(|r| r.h_y).collect();
    let layers = raw
        .into_iter()
        .map(|(layer, epochs)| (layer, epochs.into_iter().map(|(e, (x, y))| (e, (stat(&x), stat(&y)))).collect()))
        .collect();
    Curves {
        point: point_of(rows[0]),
        seeds: seeds.len(),
        layers,
        log2_n: (rows[0].n as f64).log2(),
        h_y: if h_y.is_empty() { LOG2_CLASSES } else { h_y.iter().sum::<f64>() / h_y.len() as f64 },
        has_i_xt: rows[0].estimator.has_i_xt(),
    }
}

fn layer_color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The legend box every figure uses.
fn draw_legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>) -> DrawResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: plotters::coord::CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A dashed horizontal reference line (log2 N or H(Y)) with its legend entry, then the legend.
fn draw_reference<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    (from, to): (f64, f64),
    value: f64,
    name: &str,
) -> DrawResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(DashedLineSeries::new(vec![(from, value), (to, value)], 8, 4, BLACK.mix(0.7).stroke_width(1)))?
        .label(format!("{name} = {value:.2}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.7)));
    draw_legend(chart)
}

/// Colour of an epoch on a log scale from the first to the last measured epoch.
fn epoch_color(epoch: u32, max_epoch: u32) -> RGBColor {
    let t = ((epoch as f64 + 1.0).ln() / (max_epoch as f64 + 1.0).ln().max(1e-9)).clamp(0.0, 1.0);
    ViridisRGB.get_color(t as f32)
}

/// The information plane: a line per layer through its epochs, dots coloured by epoch.
fn draw_plane<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &Curves, title: &str) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let max_epoch = c.layers.values().flat_map(|e| e.keys()).copied().max().unwrap_or(1);
    let (main, bar) = area.split_horizontally(area.dim_in_pixel().0.saturating_sub(70));
    let x_max = c.log2_n * 1.05;
    let y_max = c.h_y.max(0.1) * 1.1;
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart.configure_mesh().x_desc("I(X;T) (bits)").y_desc("I(Y;T) (bits)").light_line_style(WHITE.mix(0.0)).draw()?;
    for (i, ((_, name), epochs)) in c.layers.iter().enumerate() {
        let color = layer_color(i);
        let points: Vec<(f64, f64)> = epochs.values().map(|(x, y)| (x.mean, y.mean)).collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(
            epochs.iter().map(|(&e, (x, y))| Circle::new((x.mean, y.mean), 4, epoch_color(e, max_epoch).filled())),
        )?;
    }
    // Reference lines last, so they stay visible where layers sit at the ceiling.
    chart
        .draw_series(DashedLineSeries::new(vec![(c.log2_n, 0.0), (c.log2_n, y_max)], 3, 3, BLACK.stroke_width(1)))?
        .label(format!("log2 N = {:.2}", c.log2_n))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
    draw_reference(&mut chart, (0.0, x_max), c.h_y, "H(Y)")?;
    draw_colorbar(&bar, max_epoch)?;
    Ok(())
}

fn draw_colorbar<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, max_epoch: u32) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.dim_in_pixel();
    let (top, bottom) = (70i32, h as i32 - 50);
    area.draw(&Text::new("epoch", (2, top - 22), ("sans-serif", 14)))?;
    for y in top..bottom {
        // Top is the last epoch, like the y axis of a colour bar.
        let t = 1.0 - (y - top) as f64 / (bottom - top) as f64;
        let color = ViridisRGB.get_color(t as f32);
        area.draw(&Rectangle::new([(6, y), (22, y + 1)], color.filled()))?;
    }
    let ticks = [0u32, max_epoch / 10, max_epoch / 3, max_epoch];
    for e in ticks.iter().copied().collect::<BTreeSet<_>>() {
        let t = ((e as f64 + 1.0).ln() / (max_epoch as f64 + 1.0).ln().max(1e-9)).clamp(0.0, 1.0);
        let y = bottom - (t * (bottom - top) as f64) as i32;
        area.draw(&Text::new(e.to_string(), (26, y - 7), ("sans-serif", 13)))?;
    }
    let _ = w;
    Ok(())
}

/// MI paths: I(X;T) and I(Y;T) against epoch (log axis), a line per layer, min-max band over seeds.
fn draw_paths<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &Curves, title: &str) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let max_epoch = c.layers.values().flat_map(|e| e.keys()).copied().max().unwrap_or(1);
    let (title_area, body) = area.split_vertically(34);
    title_area.titled(title, ("sans-serif", 18))?;
    let mut quantities = vec![("I(X;T)", c.log2_n, "log2 N"), ("I(Y;T)", c.h_y, "H(Y)")];
    if !c.has_i_xt {
        quantities.remove(0);
    }
    let panels = body.split_evenly((1, quantities.len()));
    for (panel, (which, reference, reference_name)) in panels.iter().zip(quantities) {
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((1f64..(max_epoch as f64 + 1.0).max(2.0)).log_scale(), 0f64..reference * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("epoch (log scale of epoch + 1)")
            .x_label_formatter(&|x| format!("{:.0}", x - 1.0))
            .y_desc(format!("{which} (bits)"))
            .draw()?;
        for (i, ((_, name), epochs)) in c.layers.iter().enumerate() {
            let color = layer_color(i);
            let pick = |s: &(Stat, Stat)| if which == "I(X;T)" { s.0 } else { s.1 };
            if c.seeds > 1 {
                let mut band: Vec<(f64, f64)> = epochs.iter().map(|(&e, s)| (e as f64 + 1.0, pick(s).max)).collect();
                band.extend(epochs.iter().rev().map(|(&e, s)| (e as f64 + 1.0, pick(s).min)));
                chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.18).filled())))?;
            }
            chart
                .draw_series(
                    LineSeries::new(epochs.iter().map(|(&e, s)| (e as f64 + 1.0, pick(s).mean)), color.stroke_width(2))
                        .point_size(3),
                )?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        draw_reference(&mut chart, (1.0, max_epoch as f64 + 1.0), reference, reference_name)?;
    }
    Ok(())
}

/// Draws one figure with whichever backend `format` names.
macro_rules! figure {
    ($path:expr, $format:expr, $size:expr, |$area:ident| $body:expr) => {{
        match $format {
            ImageFormat::Png => {
                let $area = BitMapBackend::new($path, $size).into_drawing_area();
                $area.fill(&WHITE)?;
                $body?;
                $area.present()?;
            }
            ImageFormat::Svg => {
                let $area = SVGBackend::new($path, $size).into_drawing_area();
                $area.fill(&WHITE)?;
                $body?;
                $area.present()?;
            }
        }
    }};
}

/// Writes every figure for `rows` into `out`; returns the files written.
pub fn plot_all(rows: &[MiRow], out: &Path, format: ImageFormat) -> Result<Vec<PathBuf>, PlotError> {
    plot(rows, out, format, &Kind::ALL)
}

/// Writes the figures of the given kinds for `rows` into `out`; returns the files written.
pub fn plot(rows: &[MiRow], out: &Path, format: ImageFormat, kinds: &[Kind]) -> Result<Vec<PathBuf>, PlotError> {
    register_font()?;
    std::fs::create_dir_all(out).map_err(|e| PlotError(format!("cannot create {}: {e}", out.display())))?;
    plot_inner(rows, out, format, kinds).map_err(|e| PlotError(format!("drawing into {}: {e}", out.display())))
}

fn plot_inner(rows: &[MiRow], out: &Path, format: ImageFormat, kinds: &[Kind]) -> DrawResult<Vec<PathBuf>> {
    let ext = match format {
        ImageFormat::Png => "png",
        ImageFormat::Svg => "svg",
    };
    let mut written = Vec::new();
    // (split, estimator, setting) -> point -> rows
    type Series = (u8, Estimator, (String, String));
    let mut groups: BTreeMap<Series, BTreeMap<Point, Vec<&MiRow>>> = BTreeMap::new();
    for r in rows {
        let split = if r.split == Split::Train { 0 } else { 1 };
        groups.entry((split, r.estimator, series(r))).or_default().entry(point_of(r)).or_default().push(r);
    }
    for ((split, estimator, (setting, setting_file)), points) in &groups {
        let split_name = if *split == 0 { "train" } else { "test" };
        let all: BTreeMap<&Vec<(&'static str, String)>, Curves> =
            points.iter().map(|(p, rs)| (p, curves(rs))).collect();
        for (point, c) in &all {
            let seeds =
                if c.seeds > 1 { format!(", mean of {} seeds, band = min-max", c.seeds) } else { String::new() };
            let title = format!("{} ({split_name}, {setting}{seeds})", label(point, ""));
            let name = format!("{}-{split_name}-{setting_file}", slug(point, ""));
            if kinds.contains(&Kind::Planes) && estimator.has_i_xt() {
                let plane = out.join(format!("plane-{name}.{ext}"));
                figure!(&plane, format, (900, 650), |area| draw_plane(
                    &area,
                    c,
                    &format!("Information plane — {title}")
                ));
                written.push(plane);
            }
            if kinds.contains(&Kind::Paths) {
                let paths = out.join(format!("paths-{name}.{ext}"));
                figure!(&paths, format, (1300, 520), |area| draw_paths(&area, c, &format!("MI paths — {title}")));
                written.push(paths);
            }
        }
        if !kinds.contains(&Kind::Compare) || !estimator.has_i_xt() {
            continue;
        }
        // One comparison figure per swept parameter and per setting of the others.
        for (param, _) in point_of(rows.first().expect("rows")) {
            let values: BTreeSet<String> =
                all.keys().map(|p| p.iter().find(|(k, _)| *k == param).expect("key").1.clone()).collect();
            if values.len() < 2 {
                continue;
            }
            let mut contexts: BTreeMap<String, Vec<(&String, &Curves)>> = BTreeMap::new();
            for (point, c) in &all {
                let value = &point.iter().find(|(k, _)| *k == param).expect("key").1;
                contexts.entry(slug(point, param)).or_default().push((value, c));
            }
            for (context, mut panels) in contexts {
                if panels.len() < 2 {
                    continue;
                }
                panels.sort_by(|a, b| natural(a.0, b.0));
                let path = out.join(format!("compare-{param}-{context}-{split_name}-{setting_file}.{ext}"));
                let cols = panels.len().min(3);
                let rows_n = panels.len().div_ceil(cols);
                let size = (cols as u32 * 620, rows_n as u32 * 470 + 40);
                let context_label = label(&panels[0].1.point, param);
                figure!(&path, format, size, |area| (|| -> DrawResult<()> {
                    let (title_area, body) = area.split_vertically(40);
                    title_area.titled(
                        &format!("Information planes by {param} ({context_label}; {split_name}, {setting})"),
                        ("sans-serif", 20),
                    )?;
                    for (cell, (value, c)) in body.split_evenly((rows_n, cols)).iter().zip(&panels) {
                        draw_plane(cell, c, &format!("{param} = {value}"))?;
                    }
                    Ok(())
                })());
                written.push(path);
            }
        }
    }
    if kinds.contains(&Kind::Bins) {
        written.extend(plot_bins(rows, out, format, ext)?);
    }
    Ok(written)
}

/// Bin-size sensitivity: for every grid point and split measured at several bin sizes, each
/// layer's I(X;T) and I(Y;T) at the last measured epoch against the bin size (mean over seeds).
fn plot_bins(rows: &[MiRow], out: &Path, format: ImageFormat, ext: &str) -> DrawResult<Vec<PathBuf>> {
    // (split, point) -> (layer, name) -> bin size bits -> (epoch -> values)
    type PerBin = BTreeMap<u64, BTreeMap<u32, (Vec<f64>, Vec<f64>)>>;
    let mut groups: BTreeMap<(u8, Point), BTreeMap<(u32, String), PerBin>> = BTreeMap::new();
    for r in rows {
        let Some(b) = r.binning() else { continue };
        let split = if r.split == Split::Train { 0 } else { 1 };
        let e = groups
            .entry((split, point_of(r)))
            .or_default()
            .entry((r.layer, r.layer_name.clone()))
            .or_default()
            .entry(b.bin_size.to_bits())
            .or_default()
            .entry(r.epoch)
            .or_default();
        e.0.push(b.i_xt);
        e.1.push(r.i_yt);
    }
    let mut written = Vec::new();
    for ((split, point), layers) in &groups {
        let bins: BTreeSet<u64> = layers.values().flat_map(|b| b.keys()).copied().collect();
        if bins.len() < 2 {
            continue;
        }
        let sizes: Vec<f64> = bins.iter().map(|b| f64::from_bits(*b)).collect();
        let (lo, hi) = (sizes[0], sizes[sizes.len() - 1]);
        let sample = rows.iter().filter_map(|r| Some((r, r.binning()?))).find(|(r, _)| point_of(r) == *point);
        let (sample, binning) = sample.expect("a binning row of the point");
        let (log2_n, h_y) = ((sample.n as f64).log2(), binning.h_y);
        // layer -> [(bin size, I(X;T), I(Y;T))] at the last epoch measured at that size
        type Line<'n> = (&'n String, Vec<(f64, f64, f64)>);
        let lines: Vec<Line<'_>> = layers
            .iter()
            .map(|((_, name), per_bin)| {
                let pts = per_bin
                    .iter()
                    .filter_map(|(b, epochs)| {
                        let (x, y) = epochs.values().next_back()?;
                        Some((f64::from_bits(*b), stat(x).mean, stat(y).mean))
                    })
                    .collect();
                (name, pts)
            })
            .collect();
        let last_epoch = layers.values().flat_map(|b| b.values()).filter_map(|e| e.keys().next_back()).max();
        let split_name = if *split == 0 { "train" } else { "test" };
        let title = format!(
            "MI against bin size — {} ({split_name}, epoch {})",
            label(point, ""),
            last_epoch.map_or("-".into(), |e| e.to_string())
        );
        let path = out.join(format!("bins-{}-{split_name}.{ext}", slug(point, "")));
        figure!(&path, format, (1300, 520), |area| (|| -> DrawResult<()> {
            let (title_area, body) = area.split_vertically(34);
            title_area.titled(&title, ("sans-serif", 18))?;
            for (panel, (which, reference, reference_name)) in
                body.split_evenly((1, 2)).iter().zip([("I(X;T)", log2_n, "log2 N"), ("I(Y;T)", h_y, "H(Y)")])
            {
                let mut chart = ChartBuilder::on(panel)
                    .margin(12)
                    .x_label_area_size(40)
                    .y_label_area_size(50)
                    .build_cartesian_2d((lo * 0.9..hi * 1.1).log_scale(), 0f64..reference * 1.1)?;
                chart
                    .configure_mesh()
                    .x_desc("bin size (log scale)")
                    .x_labels(6)
                    .x_label_formatter(&|x| format!("{x:.2}"))
                    .y_desc(format!("{which} (bits)"))
                    .light_line_style(WHITE.mix(0.0))
                    .draw()?;
                for (i, (name, pts)) in lines.iter().enumerate() {
                    let color = layer_color(i);
                    let pick = |p: &(f64, f64, f64)| (p.0, if which == "I(X;T)" { p.1 } else { p.2 });
                    chart
                        .draw_series(LineSeries::new(pts.iter().map(pick), color.stroke_width(2)).point_size(3))?
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                }
                draw_reference(&mut chart, (lo * 0.9, hi * 1.1), reference, reference_name)?;
            }
            Ok(())
        })());
        written.push(path);
    }
    Ok(written)
}

/// Orders "2" before "12", and text alphabetically.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}
