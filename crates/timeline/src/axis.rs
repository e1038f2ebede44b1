//! The time axis: a round end, round ticks, and labels in ms or s.

/// A time axis from 0 to a round end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Axis {
    /// Distance between ticks (ms).
    pub step: f64,
    /// The axis's end (ms): a whole number of steps, at least the last record.
    pub end: f64,
}

impl Axis {
    /// An axis covering `0..=end_ms` with about eight ticks of 1, 2 or 5 × 10ⁿ ms.
    pub fn new(end_ms: f64) -> Self {
        let end_ms = if end_ms.is_finite() && end_ms > 0.0 {
            end_ms
        } else {
            1.0
        };
        let rough = end_ms / 8.0;
        let magnitude = 10f64.powf(rough.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= rough)
            .unwrap_or(10.0 * magnitude);
        let step = step.max(0.001);
        let end = (end_ms / step).ceil().max(1.0) * step;
        Self { step, end }
    }

    /// Where `ms` falls on the axis, from 0 (start) to 1 (end), clamped.
    pub fn fraction(&self, ms: f64) -> f64 {
        (ms / self.end).clamp(0.0, 1.0)
    }

    /// The tick positions, from 0 to the end.
    pub fn ticks(&self) -> Vec<f64> {
        let n = (self.end / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }

    /// A tick's label: like [`Axis::label`], but an axis counted in seconds starts at
    /// `0 s`.
    pub fn tick_label(&self, ms: f64) -> String {
        if ms == 0.0 && self.step >= 1000.0 {
            "0 s".into()
        } else {
            Self::label(ms)
        }
    }

    /// `0 ms`, `250 ms`, `1.5 s`, `12 s`: milliseconds below a second, seconds above.
    pub fn label(ms: f64) -> String {
        if ms.abs() < 1000.0 {
            let rounded = (ms * 10.0).round() / 10.0;
            if rounded.fract() == 0.0 {
                format!("{rounded:.0} ms")
            } else {
                format!("{rounded:.1} ms")
            }
        } else {
            let s = ms / 1000.0;
            let text = format!("{s:.3}");
            let text = text.trim_end_matches('0').trim_end_matches('.');
            format!("{text} s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_and_cover_the_end() {
        let a = Axis::new(1430.0);
        assert_eq!(a.step, 200.0);
        assert_eq!(a.end, 1600.0);
        assert_eq!(a.ticks().len(), 9);
        let a = Axis::new(37.0);
        assert_eq!(a.step, 5.0);
        assert_eq!(a.end, 40.0);
        let a = Axis::new(0.0);
        assert!(a.end > 0.0);
    }

    #[test]
    fn labels_switch_from_ms_to_s() {
        assert_eq!(Axis::label(0.0), "0 ms");
        assert_eq!(Axis::label(250.0), "250 ms");
        assert_eq!(Axis::label(12.34), "12.3 ms");
        assert_eq!(Axis::label(1000.0), "1 s");
        assert_eq!(Axis::label(1500.0), "1.5 s");
        assert_eq!(Axis::label(61_250.0), "61.25 s");
        assert_eq!(Axis::new(90_000.0).tick_label(0.0), "0 s");
        assert_eq!(Axis::new(900.0).tick_label(0.0), "0 ms");
    }
}
