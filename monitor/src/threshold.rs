//! `--warning` and `--critical`: threshold ranges in the monitoring-plugin syntax.
//!
//! The syntax of the Monitoring Plugins development guidelines ("Threshold and ranges"):
//! `N` alerts outside `0..=N` (so above N, or below 0), `N:` below N, `~:N` above N, `N:M`
//! outside `N..=M`, and a leading `@` inverts the range (alerts inside it). A plain number is
//! what nearly every definition uses: `--warning 300` alerts when the value exceeds 300.

use std::fmt;
use std::str::FromStr;

/// A parsed threshold range.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// Lower end; `None` is minus infinity (`~`).
    low: Option<f64>,
    /// Upper end; `None` is infinity.
    high: Option<f64>,
    /// `@`: alert inside the range instead of outside.
    inside: bool,
    /// The text as given, for perfdata and messages.
    text: String,
}

/// A threshold that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a threshold (N, N:, ~:N, N:M or @N:M, N a number)",
            self.0
        )
    }
}

impl std::error::Error for ParseError {}

fn number(s: &str, whole: &str) -> Result<f64, ParseError> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| ParseError(whole.to_string()))
}

impl FromStr for Range {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (inside, body) = match text.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if body.is_empty() {
            return Err(ParseError(text.to_string()));
        }
        let (low, high) = match body.split_once(':') {
            None => (Some(0.0), Some(number(body, text)?)),
            Some((lo, hi)) => {
                let low = match lo {
                    "~" => None,
                    "" => Some(0.0),
                    lo => Some(number(lo, text)?),
                };
                let high = match hi {
                    "" => None,
                    hi => Some(number(hi, text)?),
                };
                (low, high)
            }
        };
        if let (Some(l), Some(h)) = (low, high) {
            if l > h {
                return Err(ParseError(text.to_string()));
            }
        }
        Ok(Range {
            low,
            high,
            inside,
            text: text.to_string(),
        })
    }
}

impl Range {
    /// Whether `value` raises the alert this range stands for.
    pub fn alerts(&self, value: f64) -> bool {
        let within = self.low.is_none_or(|l| value >= l) && self.high.is_none_or(|h| value <= h);
        within == self.inside
    }

    /// The range as given (what perfdata repeats).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The range `@n:`: alerts when a value is `n` or more (a default threshold for counts).
    pub fn at_least(n: f64) -> Range {
        Range {
            low: Some(n),
            high: None,
            inside: true,
            text: format!("@{n}:"),
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(s: &str) -> Range {
        s.parse().unwrap()
    }

    #[test]
    fn plain_number_alerts_above_it_and_below_zero() {
        let t = r("300");
        assert!(!t.alerts(0.0));
        assert!(!t.alerts(300.0));
        assert!(t.alerts(300.5));
        assert!(t.alerts(-1.0));
    }

    #[test]
    fn open_ends_and_inversion() {
        assert!(r("10:").alerts(9.9));
        assert!(!r("10:").alerts(1e12));
        assert!(r("~:10").alerts(11.0));
        assert!(!r("~:10").alerts(-1e9));
        assert!(r("10:20").alerts(21.0));
        assert!(!r("10:20").alerts(15.0));
        assert!(r("@10:20").alerts(15.0));
        assert!(!r("@10:20").alerts(25.0));
        assert!(r("@1:").alerts(1.0));
        assert!(!r("@1:").alerts(0.0));
        let a = Range::at_least(1.0);
        assert!(a.alerts(1.0) && a.alerts(7.0) && !a.alerts(0.0));
        assert_eq!(a.as_str(), "@1:");
        assert_eq!(r("1.5:").to_string(), "1.5:");
    }

    #[test]
    fn rejects_what_is_not_a_range() {
        for bad in ["", "@", "x", "20:10", "1:2:3", "NaN", "inf", "~"] {
            assert!(bad.parse::<Range>().is_err(), "{bad}");
        }
        assert_eq!(
            "x".parse::<Range>().unwrap_err().to_string(),
            "\"x\" is not a threshold (N, N:, ~:N, N:M or @N:M, N a number)"
        );
    }
}
