//! `--html FILE`: the run as one self-contained page, for people who would
//! rather look than read.
//!
//! The page is plain HTML with inline CSS and inline SVG drawn here: no
//! script, no font, no image, nothing fetched from anywhere, so it opens
//! the same offline, from a CI artifact or an e-mail attachment. It shows,
//! for every side of the run (the bare client and the staunch stack; the
//! three quota runs for `--scenario quota`):
//!
//! - a header card with the run's numbers (answered n/N, provider calls,
//!   cost, latency percentiles, …) and a legend;
//! - the requests over time by outcome and tier: a stacked count per time
//!   bin and each request's latency at its send time, on one time axis
//!   shared by every side;
//! - each circuit breaker's state as a coloured band on that same axis
//!   (sampled while the run goes, see [`Watch`]);
//! - the latency CDFs of every side on one chart (log-scale ms, p50 and
//!   p99 marked);
//! - the fallback depth of the answers (bars) and the models that answered.
//!
//! Where a side has nothing to draw (the bare client has no breaker, a side
//! with no answers has no depth) the page says so in words. Every text that
//! goes into the page is escaped.

use staunch::circuit_breaker::CircuitBreakerHandle;
use staunch::core::QualityTier;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the breakers' states are read while a run goes.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// How one request ended for its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An answer, at this quality tier.
    Answered(QualityTier),
    /// A streamed answer that stopped early, held as if it were complete.
    Truncated,
    /// An error reached the caller (its kind, `rate_limited`, …).
    Error(String),
}

/// One request of a run, as the page draws it.
#[derive(Clone, Debug)]
pub struct Request {
    /// When it was sent, from the start of its side's run.
    pub sent: Duration,
    /// How long until its caller had the answer or the error.
    pub latency: Duration,
    pub outcome: Outcome,
    /// How many targets were passed over before the one that answered.
    pub depth: Option<u32>,
    /// The model that answered.
    pub model: Option<String>,
}

/// One circuit breaker's states over a run: each change, from the start of
/// the run.
#[derive(Clone, Debug)]
pub struct Track {
    pub name: String,
    pub changes: Vec<(Duration, &'static str)>,
    /// When the breaker changed state and changed back between two
    /// readings (its transition count moved, its state did not): the time
    /// of its last transition.
    pub missed: Vec<Duration>,
}

/// One side of the run: one client over the whole request mix.
#[derive(Clone, Debug, Default)]
pub struct Side {
    pub name: String,
    pub requests: Vec<Request>,
    /// `None`: this side has no circuit breaker at all (the page says so).
    pub breakers: Option<Vec<Track>>,
    /// The numbers for the header card, label and value.
    pub facts: Vec<(String, String)>,
    /// How long the run took.
    pub wall: Duration,
}

/// The whole page.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub title: String,
    /// One line under the title: the scenario, seed, pace.
    pub subtitle: String,
    pub sides: Vec<Side>,
    /// Paragraphs at the end of the page.
    pub notes: Vec<String>,
}

/// Reads the state of each breaker every [`SAMPLE_EVERY`] while a run goes,
/// and keeps the changes.
pub struct Watch {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Track>>,
}

impl Watch {
    /// Starts watching `breakers` (named by `names`), with times counted
    /// from `origin`.
    pub fn start(breakers: Vec<(String, CircuitBreakerHandle)>, origin: Instant) -> Watch {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tracks: Vec<Track> = breakers
                .iter()
                .map(|(name, _)| Track {
                    name: name.clone(),
                    changes: Vec::new(),
                    missed: Vec::new(),
                })
                .collect();
            let mut transitions: Vec<u64> = breakers
                .iter()
                .map(|(_, handle)| handle.counts().transitions)
                .collect();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                let at = origin.elapsed();
                for (((_, handle), track), seen) in
                    breakers.iter().zip(tracks.iter_mut()).zip(&mut transitions)
                {
                    let state = handle.state().as_str();
                    let now = handle.counts().transitions;
                    let changed = track.changes.last().map(|(_, s)| *s) != Some(state);
                    if changed {
                        track.changes.push((at, state));
                    } else if now > *seen && !track.changes.is_empty() {
                        let when = handle
                            .last_transition()
                            .map_or(at, |t| t.into_std().saturating_duration_since(origin));
                        track.missed.push(when);
                    }
                    *seen = now;
                }
                if last {
                    return tracks;
                }
            }
        });
        Watch { stop, task }
    }

    /// Stops watching (after one last reading) and gives the tracks.
    pub async fn stop(self) -> Vec<Track> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Writes `page` to `path`.
pub fn write(path: &Path, page: &Page) -> std::io::Result<()> {
    std::fs::write(path, render(page))
}

// ---------------------------------------------------------------------------
// Text, colours, scales
// ---------------------------------------------------------------------------

/// `text`, safe inside an element or a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const TIER_COLOURS: [(QualityTier, &str); 4] = [
    (QualityTier::Full, "#2e7d32"),
    (QualityTier::Reduced, "#1e88e5"),
    (QualityTier::Cached, "#8e24aa"),
    (QualityTier::Static, "#00897b"),
];
const TRUNCATED_COLOUR: &str = "#212121";
/// The most frequent error kinds get their own warm colour; the rest share
/// the last one.
const ERROR_COLOURS: [&str; 5] = ["#d32f2f", "#ff8f00", "#f06292", "#8d6e63", "#fdd835"];
const OTHER_ERRORS_COLOUR: &str = "#ef9a9a";
/// One colour per side, for the CDF and the depth bars.
const SIDE_COLOURS: [&str; 4] = ["#e64a19", "#1565c0", "#2e7d32", "#6a1b9a"];

fn state_colour(state: &str) -> &'static str {
    match state {
        "closed" => "#a5d6a7",
        "half_open" => "#ffca28",
        "open" => "#e53935",
        "forced_open" => "#7f0000",
        _ => "#bdbdbd",
    }
}

fn state_label(state: &str) -> &'static str {
    match state {
        "closed" => "closed",
        "half_open" => "half-open",
        "open" => "open",
        "forced_open" => "forced open",
        "disabled" => "disabled",
        _ => "other",
    }
}

/// The categories the requests are coloured by, in stacking order: the
/// tiers, a truncated answer, then the errors by kind (most frequent first).
struct Palette {
    /// (label, colour), in stacking order.
    categories: Vec<(String, &'static str)>,
    /// Error kind -> index into `categories`.
    errors: BTreeMap<String, usize>,
}

impl Palette {
    fn new(sides: &[Side]) -> Palette {
        let mut categories: Vec<(String, &'static str)> = TIER_COLOURS
            .iter()
            .map(|(tier, colour)| (format!("answered: {}", tier.as_str()), *colour))
            .collect();
        categories.push(("truncated, shown as complete".to_owned(), TRUNCATED_COLOUR));
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for r in sides.iter().flat_map(|s| &s.requests) {
            if let Outcome::Error(kind) = &r.outcome {
                *kinds.entry(kind).or_default() += 1;
            }
        }
        let mut kinds: Vec<(&str, usize)> = kinds.into_iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut errors = BTreeMap::new();
        let distinct = if kinds.len() > ERROR_COLOURS.len() {
            ERROR_COLOURS.len() - 1
        } else {
            kinds.len()
        };
        for (i, (kind, _)) in kinds.iter().enumerate() {
            if i < distinct {
                errors.insert(kind.to_string(), categories.len());
                categories.push((format!("error: {kind}"), ERROR_COLOURS[i]));
            } else {
                if i == distinct {
                    categories.push(("error: other kinds".to_owned(), OTHER_ERRORS_COLOUR));
                }
                errors.insert(kind.to_string(), categories.len() - 1);
            }
        }
        Palette { categories, errors }
    }

    fn index(&self, outcome: &Outcome) -> usize {
        match outcome {
            Outcome::Answered(tier) => TIER_COLOURS
                .iter()
                .position(|(t, _)| t == tier)
                .unwrap_or(0),
            Outcome::Truncated => TIER_COLOURS.len(),
            Outcome::Error(kind) => self.errors.get(kind).copied().unwrap_or(0),
        }
    }

    fn colour(&self, outcome: &Outcome) -> &'static str {
        self.categories[self.index(outcome)].1
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A log scale from `lo` to `hi` (powers of ten, in ms) onto `a..b`.
#[derive(Clone, Copy)]
struct LogScale {
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
}

impl LogScale {
    /// Powers of ten around the latencies of every side.
    fn around(sides: &[Side], a: f64, b: f64) -> LogScale {
        let all = || {
            sides
                .iter()
                .flat_map(|s| &s.requests)
                .map(|r| ms(r.latency))
        };
        let min = all().fold(f64::INFINITY, f64::min).max(0.1);
        let max = all().fold(0.0, f64::max).max(min);
        let lo = 10f64.powf(min.log10().floor());
        let mut hi = 10f64.powf(max.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        LogScale { lo, hi, a, b }
    }

    fn at(&self, value_ms: f64) -> f64 {
        let v = value_ms.clamp(self.lo, self.hi);
        self.a + (v / self.lo).log10() / (self.hi / self.lo).log10() * (self.b - self.a)
    }

    /// Powers of ten from `lo` to `hi`.
    fn decades(&self) -> Vec<f64> {
        let mut v = Vec::new();
        let mut x = self.lo;
        while x <= self.hi * 1.0001 {
            v.push(x);
            x *= 10.0;
        }
        v
    }
}

fn ms_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v} ms")
    }
}

/// A round step for about `max_steps` steps over `span`.
fn nice_step(span: f64, max_steps: f64, steps: &[f64]) -> f64 {
    steps
        .iter()
        .copied()
        .find(|s| span / s <= max_steps)
        .unwrap_or(*steps.last().unwrap_or(&1.0))
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() as f64 - 1.0) * q).round() as usize])
}

// ---------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------

/// Width of every chart, and its plot area's left and right edges.
const WIDTH: f64 = 1320.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = WIDTH - 24.0;

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif;
       margin: 0; padding: 18px 30px 40px; background: #fafafa; color: #212121; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 26px 0 6px; }
p.sub { margin: 0 0 14px; color: #555; }
p.note, li.note { color: #555; font-size: 13px; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 10px 16px; min-width: 300px; flex: 1; }
.card h3 { margin: 0 0 4px; font-size: 16px; display: flex; align-items: center; gap: 8px; }
.card .big { font-size: 30px; font-weight: 700; }
.card .big small { font-size: 15px; font-weight: 400; color: #555; }
.card table { border-collapse: collapse; font-size: 13px; margin-top: 4px; }
.card td { padding: 1px 14px 1px 0; }
.card td.v { text-align: right; font-variant-numeric: tabular-nums; font-weight: 600; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 13px; margin: 12px 0 0; }
.legend span.sw { display: inline-block; width: 13px; height: 13px; border-radius: 3px;
                  vertical-align: -2px; margin-right: 5px; border: 1px solid rgba(0,0,0,.15); }
.legend b { margin-right: 4px; }
.chart { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 6px 0; }
svg text { font-family: inherit; font-size: 12px; fill: #333; }
svg text.t { font-size: 14px; font-weight: 700; fill: #212121; }
svg text.m { fill: #777; font-style: italic; }
svg .grid { stroke: #eee; }
svg .axis { stroke: #999; }
.row { display: flex; gap: 14px; }
.row > div { flex: 1; }
table.models { border-collapse: collapse; font-size: 13px; background: #fff; }
table.models td, table.models th { border: 1px solid #ddd; padding: 3px 10px; text-align: left; }
table.models td.v { text-align: right; font-variant-numeric: tabular-nums; }
";

/// The whole page as HTML.
pub fn render(page: &Page) -> String {
    let palette = Palette::new(&page.sides);
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(h, "<title>{}</title>", esc(&page.title));
    let _ = writeln!(h, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(h, "<h1>{}</h1>", esc(&page.title));
    let _ = writeln!(h, "<p class=\"sub\">{}</p>", esc(&page.subtitle));
    cards(&mut h, page);
    legend(&mut h, page, &palette);

    h.push_str("<h2>Requests over time, by outcome and tier</h2>\n");
    h.push_str(
        "<p class=\"note\">For each side: how many requests were sent in each time bin, stacked by \
         how they ended; below it, each request's latency (log scale) at the moment it was sent; \
         under the sides with circuit breakers, each breaker's state as a band. One time axis for \
         all.</p>\n",
    );
    timeline(&mut h, page, &palette);

    h.push_str("<h2>Latency CDF of every side</h2>\n");
    h.push_str(
        "<p class=\"note\">The share of requests that had their answer or their error within a \
         time (log scale); the dots mark p50 and p99.</p>\n",
    );
    cdf(&mut h, page);

    h.push_str("<h2>Fallback depth of the answers</h2>\n");
    h.push_str(
        "<p class=\"note\">How many targets of the chain were passed over before the one that \
         answered (0: the first choice answered), over the answers that came from a model; and \
         who answered (cached and static answers are counted in the table, not in the \
         bars).</p>\n",
    );
    depth(&mut h, page);

    if !page.notes.is_empty() {
        h.push_str("<ul>\n");
        for note in &page.notes {
            let _ = writeln!(h, "<li class=\"note\">{}</li>", esc(note));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn cards(h: &mut String, page: &Page) {
    h.push_str("<div class=\"cards\">\n");
    for (i, side) in page.sides.iter().enumerate() {
        let n = side.requests.len();
        let answered = side
            .requests
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Answered(_)))
            .count();
        let share = if n == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}%", answered as f64 * 100.0 / n as f64)
        };
        let _ = writeln!(
            h,
            "<div class=\"card\"><h3><span style=\"display:inline-block;width:14px;height:14px;\
             border-radius:7px;background:{}\"></span>{}</h3>\
             <div class=\"big\">{answered}/{n} <small>answered ({})</small></div><table>",
            SIDE_COLOURS[i % SIDE_COLOURS.len()],
            esc(&side.name),
            esc(&share)
        );
        for (label, value) in &side.facts {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"v\">{}</td></tr>",
                esc(label),
                esc(value)
            );
        }
        h.push_str("</table></div>\n");
    }
    h.push_str("</div>\n");
}

fn legend(h: &mut String, page: &Page, palette: &Palette) {
    let seen: Vec<bool> = (0..palette.categories.len())
        .map(|i| {
            page.sides
                .iter()
                .flat_map(|s| &s.requests)
                .any(|r| palette.index(&r.outcome) == i)
        })
        .collect();
    h.push_str("<div class=\"legend\"><b>Requests:</b>");
    for (i, (label, colour)) in palette.categories.iter().enumerate() {
        if seen[i] {
            let _ = write!(
                h,
                "<span><span class=\"sw\" style=\"background:{colour}\"></span>{}</span>",
                esc(label)
            );
        }
    }
    h.push_str("</div>\n<div class=\"legend\"><b>Breakers:</b>");
    for state in ["closed", "half_open", "open", "forced_open", "disabled"] {
        let _ = write!(
            h,
            "<span><span class=\"sw\" style=\"background:{}\"></span>{}</span>",
            state_colour(state),
            esc(state_label(state))
        );
    }
    let _ = write!(
        h,
        "<span><span class=\"sw\" style=\"background:{};width:4px;border-color:#5d4037\"></span>\
         changed and back between two readings</span>",
        state_colour("half_open")
    );
    h.push_str("</div>\n");
}

/// The end of the shared time axis, in seconds.
fn time_span(page: &Page) -> f64 {
    let mut end: f64 = 0.1;
    for side in &page.sides {
        end = end.max(side.wall.as_secs_f64());
        for r in &side.requests {
            end = end.max((r.sent + r.latency).as_secs_f64());
        }
    }
    end
}

fn timeline(h: &mut String, page: &Page, palette: &Palette) {
    const BARS: f64 = 84.0;
    const DOTS: f64 = 96.0;
    const BAND: f64 = 15.0;
    const BAND_GAP: f64 = 4.0;
    let span = time_span(page);
    let x = |s: f64| LEFT + s / span * (RIGHT - LEFT);
    let tick = nice_step(
        span,
        14.0,
        &[
            0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
        ],
    );
    // About 60 bins, on round boundaries.
    let bin = nice_step(
        span,
        70.0,
        &[0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0],
    );
    let bins = (span / bin).ceil().max(1.0) as usize;
    let counts: Vec<Vec<Vec<u32>>> = page
        .sides
        .iter()
        .map(|side| {
            let mut c = vec![vec![0u32; palette.categories.len()]; bins];
            for r in &side.requests {
                let b = ((r.sent.as_secs_f64() / bin) as usize).min(bins - 1);
                c[b][palette.index(&r.outcome)] += 1;
            }
            c
        })
        .collect();
    let top = counts
        .iter()
        .flatten()
        .map(|b| b.iter().sum::<u32>())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let scale = LogScale::around(&page.sides, 0.0, 0.0);

    let mut body = String::new();
    let mut y = 8.0;
    for (si, side) in page.sides.iter().enumerate() {
        let answered = side
            .requests
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Answered(_)))
            .count();
        let _ = writeln!(
            body,
            "<text class=\"t\" x=\"12\" y=\"{:.1}\" fill=\"{}\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{answered} of {} answered</text>",
            y + 14.0,
            SIDE_COLOURS[si % SIDE_COLOURS.len()],
            esc(&side.name),
            RIGHT,
            y + 14.0,
            side.requests.len()
        );
        y += 22.0;
        // The stacked counts.
        let base = y + BARS;
        let _ = writeln!(
            body,
            "<text x=\"12\" y=\"{:.1}\">requests per {}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>\
             <line class=\"axis\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{base:.1}\" y2=\"{base:.1}\"/>",
            y + BARS / 2.0 + 4.0,
            esc(&ms_label(bin * 1000.0)),
            LEFT - 6.0,
            y + 10.0,
            top,
            LEFT - 6.0,
            base
        );
        let w = (x(bin) - x(0.0)).max(1.0);
        for (b, cats) in counts[si].iter().enumerate() {
            let mut at = base;
            for (ci, &n) in cats.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let hgt = n as f64 / top * BARS;
                at -= hgt;
                let _ = write!(
                    body,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                    x(b as f64 * bin) + 0.5,
                    at,
                    (w - 1.0).max(0.8),
                    hgt,
                    palette.categories[ci].1
                );
            }
        }
        body.push('\n');
        y = base + 16.0;
        // Each request's latency at its send time.
        let ly = |v: f64| {
            let s = LogScale {
                a: y + DOTS,
                b: y,
                ..scale
            };
            s.at(v)
        };
        let _ = writeln!(
            body,
            "<text x=\"12\" y=\"{:.1}\">latency (log)</text>",
            y + DOTS / 2.0 + 4.0
        );
        for d in scale.decades() {
            let _ = writeln!(
                body,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{0:.1}\" y2=\"{0:.1}\"/>\
                 <text x=\"{1:.1}\" y=\"{2:.1}\" text-anchor=\"end\">{3}</text>",
                ly(d),
                LEFT - 6.0,
                ly(d) + 4.0,
                esc(&ms_label(d))
            );
        }
        for r in &side.requests {
            let _ = write!(
                body,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.2\" fill=\"{}\" fill-opacity=\"0.75\"/>",
                x(r.sent.as_secs_f64()),
                ly(ms(r.latency)),
                palette.colour(&r.outcome)
            );
        }
        body.push('\n');
        y += DOTS + 8.0;
        // The breakers.
        match &side.breakers {
            None => {
                let _ = writeln!(
                    body,
                    "<text class=\"m\" x=\"{LEFT}\" y=\"{:.1}\">no circuit breaker on this side: \
                     nothing to show here</text>",
                    y + 12.0
                );
                y += 20.0;
            }
            Some(tracks) if tracks.is_empty() => {
                let _ = writeln!(
                    body,
                    "<text class=\"m\" x=\"{LEFT}\" y=\"{:.1}\">no breaker state was recorded</text>",
                    y + 12.0
                );
                y += 20.0;
            }
            Some(tracks) => {
                let end = side.wall.as_secs_f64().max(
                    side.requests
                        .iter()
                        .map(|r| (r.sent + r.latency).as_secs_f64())
                        .fold(0.0, f64::max),
                );
                for track in tracks {
                    let _ = write!(
                        body,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">breaker {}</text>",
                        LEFT - 6.0,
                        y + BAND - 3.0,
                        esc(&track.name)
                    );
                    for (k, (from, state)) in track.changes.iter().enumerate() {
                        let to = track
                            .changes
                            .get(k + 1)
                            .map_or(end, |(t, _)| t.as_secs_f64())
                            .max(from.as_secs_f64());
                        let (x0, x1) = (x(from.as_secs_f64()), x(to));
                        let _ = write!(
                            body,
                            "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{BAND}\" \
                             fill=\"{}\"><title>{} from {:.2} s</title></rect>",
                            (x1 - x0).max(1.0),
                            state_colour(state),
                            esc(state_label(state)),
                            from.as_secs_f64()
                        );
                        if x1 - x0 > 70.0 {
                            let ink = if matches!(*state, "open" | "forced_open") {
                                "#fff"
                            } else {
                                "#1b5e20"
                            };
                            let _ = write!(
                                body,
                                "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:{ink};font-size:11px\">{} \
                                 from {:.2} s</text>",
                                x0 + 5.0,
                                y + BAND - 4.0,
                                esc(state_label(state)),
                                from.as_secs_f64()
                            );
                        }
                    }
                    for when in &track.missed {
                        let _ = write!(
                            body,
                            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"3\" height=\"{:.1}\" \
                             fill=\"{}\" stroke=\"#5d4037\" stroke-width=\"0.6\"><title>changed state and \
                             back between two readings, at {:.2} s</title></rect>",
                            x(when.as_secs_f64()) - 1.5,
                            y - 2.0,
                            BAND + 4.0,
                            state_colour("half_open"),
                            when.as_secs_f64()
                        );
                    }
                    body.push('\n');
                    y += BAND + BAND_GAP;
                }
            }
        }
        y += 16.0;
    }
    // The shared time axis.
    let axis = y + 4.0;
    let mut grid = String::new();
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let _ = writeln!(
            grid,
            "<line class=\"grid\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"8\" y2=\"{1:.1}\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(t),
            axis,
            axis + 16.0,
            esc(&format!("{} s", (t * 1000.0).round() / 1000.0))
        );
        t += tick;
    }
    let _ = writeln!(
        grid,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{axis:.1}\" y2=\"{axis:.1}\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time since the side's start (send time)</text>",
        (LEFT + RIGHT) / 2.0,
        axis + 34.0
    );
    let height = axis + 44.0;
    let _ = writeln!(
        h,
        "<div class=\"chart\"><svg width=\"{WIDTH}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\" \
         role=\"img\" aria-label=\"requests over time\">\n{grid}{body}</svg></div>"
    );
}

fn cdf(h: &mut String, page: &Page) {
    const TOP: f64 = 16.0;
    const PLOT: f64 = 300.0;
    let bottom = TOP + PLOT;
    let scale = LogScale::around(&page.sides, LEFT, RIGHT);
    let y = |q: f64| bottom - q * PLOT;
    let mut s = String::new();
    for q in [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0] {
        let _ = writeln!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{0:.1}\" y2=\"{0:.1}\"/>",
            y(q)
        );
        // 100% would sit on 99%.
        if q < 1.0 {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 6.0,
                y(q) + 4.0,
                esc(&format!("{}%", q * 100.0))
            );
        }
    }
    for d in scale.decades() {
        for k in 1..10 {
            let v = d * k as f64;
            if v > scale.hi * 1.0001 || (k > 1 && d >= scale.hi) {
                break;
            }
            let _ = write!(
                s,
                "<line class=\"grid\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{bottom:.1}\"{1}/>",
                scale.at(v),
                if k == 1 { " style=\"stroke:#ccc\"" } else { "" }
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            scale.at(d),
            bottom + 16.0,
            esc(&ms_label(d))
        );
    }
    let _ = writeln!(
        s,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{bottom:.1}\" y2=\"{bottom:.1}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{bottom:.1}\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">latency (ms, log scale): until the \
         answer or the error reached the caller</text>\
         <text x=\"24\" y=\"{:.1}\">share of requests</text>",
        (LEFT + RIGHT) / 2.0,
        bottom + 36.0,
        TOP + PLOT / 2.0
    );
    for (si, side) in page.sides.iter().enumerate() {
        let colour = SIDE_COLOURS[si % SIDE_COLOURS.len()];
        let mut v: Vec<f64> = side.requests.iter().map(|r| ms(r.latency)).collect();
        v.sort_by(f64::total_cmp);
        // The key, bottom right, where the curves have risen.
        let legend_x = RIGHT - 260.0;
        let legend_y = bottom - 18.0 - (page.sides.len() - 1 - si) as f64 * 20.0;
        let _ = writeln!(
            s,
            "<line x1=\"{legend_x:.1}\" x2=\"{:.1}\" y1=\"{legend_y:.1}\" y2=\"{legend_y:.1}\" \
             stroke=\"{colour}\" stroke-width=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" style=\"font-size:13px\">{}</text>",
            legend_x + 26.0,
            legend_x + 34.0,
            legend_y + 4.0,
            esc(&side.name)
        );
        let (Some(p50), Some(p99)) = (quantile(&v, 0.50), quantile(&v, 0.99)) else {
            continue;
        };
        let n = v.len() as f64;
        let mut path = format!("M{:.1},{:.1}", scale.at(v[0]), y(0.0));
        for (i, l) in v.iter().enumerate() {
            let _ = write!(path, " H{:.1} V{:.1}", scale.at(*l), y((i + 1) as f64 / n));
        }
        let _ = writeln!(
            s,
            "<path d=\"{path}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.2\"/>"
        );
        for (q, value, name) in [(0.5, p50, "p50"), (0.99, p99, "p99")] {
            let cx = scale.at(value);
            let label_y = y(q) + 16.0 + si as f64 * 15.0;
            let _ = writeln!(
                s,
                "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{bottom:.1}\" stroke=\"{colour}\" \
                 stroke-dasharray=\"3 3\"/>\
                 <circle cx=\"{cx:.1}\" cy=\"{:.1}\" r=\"4.5\" fill=\"{colour}\" stroke=\"#fff\"/>\
                 <text x=\"{:.1}\" y=\"{label_y:.1}\" fill=\"{colour}\" style=\"fill:{colour};font-weight:600\">{}</text>",
                y(q),
                y(q),
                cx + 6.0,
                esc(&format!("{name} {value:.0} ms"))
            );
        }
    }
    let height = bottom + 46.0;
    let _ = writeln!(
        h,
        "<div class=\"chart\"><svg width=\"{WIDTH}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\" \
         role=\"img\" aria-label=\"latency CDF\">\n{s}</svg></div>"
    );
}

fn depth(h: &mut String, page: &Page) {
    let counts: Vec<BTreeMap<u32, u64>> = page
        .sides
        .iter()
        .map(|side| {
            let mut c = BTreeMap::new();
            for r in &side.requests {
                if let (Outcome::Answered(QualityTier::Full | QualityTier::Reduced), Some(d)) =
                    (&r.outcome, r.depth)
                {
                    *c.entry(d).or_default() += 1;
                }
            }
            c
        })
        .collect();
    h.push_str("<div class=\"row\"><div>\n");
    if counts.iter().all(BTreeMap::is_empty) {
        h.push_str(
            "<p class=\"note\"><i>No side has an answer that says its fallback depth: nothing \
             to draw.</i></p>\n",
        );
    } else {
        const W: f64 = 860.0;
        const L: f64 = 60.0;
        const TOP: f64 = 26.0 + 18.0 * 3.0;
        const PLOT: f64 = 180.0;
        let bottom = TOP + PLOT;
        let deepest = counts
            .iter()
            .flat_map(|c| c.keys())
            .copied()
            .max()
            .unwrap_or(0);
        let top = counts
            .iter()
            .flat_map(|c| c.values())
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let groups = deepest as f64 + 1.0;
        let group = (W - L - 20.0) / groups;
        let bar = (group * 0.8 / page.sides.len().max(1) as f64).min(80.0);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<line class=\"axis\" x1=\"{L}\" x2=\"{:.1}\" y1=\"{bottom:.1}\" y2=\"{bottom:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{top}</text>\
             <line class=\"grid\" x1=\"{L}\" x2=\"{:.1}\" y1=\"{TOP}\" y2=\"{TOP}\"/>\
             <text x=\"{L}\" y=\"16\">answers</text>",
            W - 20.0,
            L - 6.0,
            TOP + 4.0,
            W - 20.0
        );
        for d in 0..=deepest {
            let gx = L + d as f64 * group;
            let used = bar * page.sides.len() as f64;
            let label = match d {
                0 => "0: first choice".to_owned(),
                1 => "1 target passed over".to_owned(),
                n => format!("{n} targets passed over"),
            };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                gx + group / 2.0,
                bottom + 18.0,
                esc(&label)
            );
            for (si, c) in counts.iter().enumerate() {
                let n = c.get(&d).copied().unwrap_or(0);
                let bx = gx + (group - used) / 2.0 + si as f64 * bar;
                let hgt = n as f64 / top * PLOT;
                let colour = SIDE_COLOURS[si % SIDE_COLOURS.len()];
                let _ = writeln!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{hgt:.1}\" fill=\"{colour}\"/>\
                     <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{n}</text>",
                    bx + 2.0,
                    bottom - hgt,
                    bar - 4.0,
                    bx + bar / 2.0,
                    bottom - hgt - 4.0
                );
            }
        }
        for (si, side) in page.sides.iter().enumerate() {
            let colour = SIDE_COLOURS[si % SIDE_COLOURS.len()];
            let lx = W - 240.0;
            let ly = 8.0 + si as f64 * 18.0;
            let _ = writeln!(
                s,
                "<rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                lx + 18.0,
                ly + 10.0,
                esc(&side.name)
            );
        }
        let height = bottom + 30.0;
        let _ = writeln!(
            h,
            "<div class=\"chart\"><svg width=\"{W}\" height=\"{height:.0}\" viewBox=\"0 0 {W} {height:.0}\" \
             role=\"img\" aria-label=\"fallback depth\">\n{s}</svg></div>"
        );
    }
    for (side, c) in page.sides.iter().zip(&counts) {
        if c.is_empty() {
            let _ = writeln!(
                h,
                "<p class=\"note\"><i>{}: no answer from a model, so no fallback depth.</i></p>",
                esc(&side.name)
            );
        }
    }
    h.push_str("</div><div>\n<table class=\"models\"><tr><th>side</th><th>answered by model</th><th>answers</th></tr>\n");
    for side in &page.sides {
        let mut models: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &side.requests {
            let model = match &r.outcome {
                Outcome::Answered(QualityTier::Static) => "(the static answer)",
                Outcome::Answered(QualityTier::Cached) => "(a cached answer)",
                Outcome::Answered(_) => r.model.as_deref().unwrap_or("(not said)"),
                _ => continue,
            };
            *models.entry(model).or_default() += 1;
        }
        if models.is_empty() {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td colspan=\"2\"><i>no answer</i></td></tr>",
                esc(&side.name)
            );
        }
        let mut models: Vec<(&str, u64)> = models.into_iter().collect();
        models.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (model, n) in models {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"v\">{n}</td></tr>",
                esc(&side.name),
                esc(model)
            );
        }
    }
    h.push_str("</table></div></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sent_ms: u64, latency_ms: u64, outcome: Outcome, model: &str) -> Request {
        let answered = matches!(outcome, Outcome::Answered(_));
        Request {
            sent: Duration::from_millis(sent_ms),
            latency: Duration::from_millis(latency_ms),
            depth: answered.then_some(if model == "claude" { 1 } else { 0 }),
            model: answered.then(|| model.to_owned()),
            outcome,
        }
    }

    const HOSTILE: &str = "<script>alert(1)</script>";

    fn page() -> Page {
        let naive = Side {
            name: "(a) naive client".into(),
            requests: (0..40)
                .map(|i| {
                    let outcome = if i % 3 == 0 {
                        Outcome::Error(if i % 2 == 0 { "overloaded" } else { "timeout" }.into())
                    } else {
                        Outcome::Answered(QualityTier::Full)
                    };
                    request(i * 10, 15 + i * 7, outcome, "gpt-4o")
                })
                .collect(),
            breakers: None,
            facts: vec![("provider calls".into(), "40".into())],
            wall: Duration::from_millis(700),
        };
        let stack = Side {
            name: "(b) staunch <stack> & \"co\"".into(),
            requests: (0..40)
                .map(|i| {
                    let (outcome, model) = match i % 4 {
                        0 => (Outcome::Answered(QualityTier::Reduced), "claude"),
                        1 => (Outcome::Answered(QualityTier::Static), HOSTILE),
                        2 => (Outcome::Truncated, "gpt-4o"),
                        _ => (Outcome::Answered(QualityTier::Full), "gpt-4o"),
                    };
                    request(i * 10, 20 + i * 3, outcome, model)
                })
                .collect(),
            breakers: Some(vec![Track {
                name: "openai".into(),
                changes: vec![
                    (Duration::ZERO, "closed"),
                    (Duration::from_millis(100), "open"),
                    (Duration::from_millis(300), "half_open"),
                    (Duration::from_millis(350), "closed"),
                ],
                missed: vec![Duration::from_millis(500)],
            }]),
            facts: vec![("cost".into(), "$0.0100".into())],
            wall: Duration::from_millis(600),
        };
        Page {
            title: "chaos: a synthetic run".into(),
            subtitle: "two sides, forty requests each".into(),
            sides: vec![naive, stack],
            notes: vec![format!("a note with {HOSTILE}")],
        }
    }

    #[test]
    fn the_page_is_self_contained_well_formed_and_escaped() {
        let html = render(&page());
        // Nothing is fetched: no address at all, no external script.
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script"), "no script at all");
        assert!(!html.contains("src="));
        assert!(!html.contains("<link"));
        assert!(!html.contains("@import") && !html.contains("url("));
        // Balanced tags where the charts are.
        assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
        assert_eq!(html.matches("<svg").count(), 3, "timeline, CDF, depth");
        assert_eq!(html.matches("<div").count(), html.matches("</div>").count());
        assert_eq!(
            html.matches("<table").count(),
            html.matches("</table>").count()
        );
        // Hostile text is shown as text.
        assert!(!html.contains(HOSTILE));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("(b) staunch &lt;stack&gt; &amp; &quot;co&quot;"));
        // Every chart is there, and what a side lacks is said.
        for title in [
            "Requests over time, by outcome and tier",
            "Latency CDF of every side",
            "Fallback depth of the answers",
            "answered by model",
            "breaker openai",
            "no circuit breaker on this side",
            "p50 ",
            "p99 ",
            "error: overloaded",
            "truncated, shown as complete",
        ] {
            assert!(html.contains(title), "missing {title:?}");
        }
        assert!(html.contains("26/40"), "the naive side's answered n/N");
    }

    #[test]
    fn a_side_without_answers_says_so() {
        let mut page = page();
        for side in &mut page.sides {
            for r in &mut side.requests {
                r.outcome = Outcome::Error("connect".into());
                r.depth = None;
            }
        }
        page.sides[1].breakers = Some(Vec::new());
        let html = render(&page);
        assert_eq!(html.matches("<svg").count(), 2, "no depth chart");
        assert!(html.contains("nothing to draw"));
        assert!(html.contains("no answer from a model, so no fallback depth"));
        assert!(html.contains("no breaker state was recorded"));
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[tokio::test]
    async fn the_watch_records_changes_only() {
        let handle = staunch::circuit_breaker::CircuitBreakerLayer::new(
            staunch::circuit_breaker::CircuitBreakerConfig::new("t"),
        )
        .expect("a valid config")
        .handle();
        let watch = Watch::start(vec![("t".into(), handle.clone())], Instant::now());
        tokio::time::sleep(SAMPLE_EVERY * 3).await;
        handle.force_open();
        tokio::time::sleep(SAMPLE_EVERY * 3).await;
        let tracks = watch.stop().await;
        let states: Vec<&str> = tracks[0].changes.iter().map(|(_, s)| *s).collect();
        assert_eq!(states, ["closed", "forced_open"]);
    }
}
