//! Go's number formatting, as alert templates print it: `%v` of a float64 (`{{ $value }}`),
//! `%.4g` (Prometheus' `humanize`), `%e`, `%f`, and a `printf` subset. Templates written for
//! Prometheus must render the same text here, and promtool's unit tests compare that text.

use std::fmt::Write as _;

/// Decimal digits of a finite, non-negative number: `0.d1d2d3… × 10^point`.
struct Digits {
    digits: Vec<u8>,
    point: i32,
}

impl Digits {
    /// The shortest digits that round-trip, as Go's `strconv` with precision -1.
    fn shortest(v: f64) -> Self {
        Self::from_exponent_form(&format!("{:e}", v.abs()))
    }

    /// `significant` correctly rounded significant digits, trailing zeros removed.
    fn significant(v: f64, significant: usize) -> Self {
        let precision = significant.max(1) - 1;
        Self::from_exponent_form(&format!("{:.*e}", precision, v.abs()))
    }

    /// Parses Rust's `{:e}` output (`1.2345e6`, `0e0`).
    fn from_exponent_form(text: &str) -> Self {
        let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let mut digits: Vec<u8> = mantissa
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        while digits.len() > 1 && digits.last() == Some(&0) {
            digits.pop();
        }
        if digits == [0] {
            return Self {
                digits: Vec::new(),
                point: 0,
            };
        }
        Self {
            digits,
            point: exponent + 1,
        }
    }

    fn digit(&self, i: i32) -> char {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.digits.get(i))
            .map_or('0', |d| char::from(b'0' + d))
    }

    /// `%e` with `precision` digits after the point.
    fn write_exponent(&self, out: &mut String, precision: usize, upper: bool) {
        out.push(self.digit(0));
        if precision > 0 {
            out.push('.');
            for i in 1..=precision {
                out.push(self.digit(i as i32));
            }
        }
        out.push(if upper { 'E' } else { 'e' });
        let exponent = if self.digits.is_empty() {
            0
        } else {
            self.point - 1
        };
        out.push(if exponent < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", exponent.abs());
    }

    /// `%f` with `precision` digits after the point.
    fn write_fixed(&self, out: &mut String, precision: usize) {
        if self.point > 0 {
            for i in 0..self.point {
                out.push(self.digit(i));
            }
        } else {
            out.push('0');
        }
        if precision > 0 {
            out.push('.');
            for i in 0..precision as i32 {
                out.push(self.digit(self.point + i));
            }
        }
    }
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v == f64::INFINITY {
        Some("+Inf".into())
    } else if v == f64::NEG_INFINITY {
        Some("-Inf".into())
    } else {
        None
    }
}

fn sign(v: f64, plus: bool, space: bool) -> &'static str {
    if v.is_sign_negative() && v != 0.0 || (v == 0.0 && v.is_sign_negative()) {
        "-"
    } else if plus {
        "+"
    } else if space {
        " "
    } else {
        ""
    }
}

/// Go's `%g` with an optional precision (`None` = shortest, as `%v` prints a float64).
pub fn format_g(v: f64, precision: Option<usize>) -> String {
    format_g_flags(v, precision, false, false, false)
}

fn format_g_flags(
    v: f64,
    precision: Option<usize>,
    plus: bool,
    space: bool,
    upper: bool,
) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let mut out = String::from(sign(v, plus, space));
    let (digits, shortest) = match precision {
        None => (Digits::shortest(v), true),
        Some(p) => (Digits::significant(v, p.max(1)), false),
    };
    let nd = digits.digits.len() as i32;
    let mut prec = match precision {
        None => nd,
        Some(p) => p.max(1) as i32,
    };
    let mut eprec = prec;
    if eprec > nd && nd >= digits.point {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exponent = digits.point - 1;
    if exponent < -4 || exponent >= eprec {
        if prec > nd {
            prec = nd;
        }
        digits.write_exponent(&mut out, (prec - 1).max(0) as usize, upper);
        return out;
    }
    if prec > digits.point {
        prec = nd;
    }
    digits.write_fixed(&mut out, (prec - digits.point).max(0) as usize);
    out
}

/// Go's `%e` with a precision (default 6).
pub fn format_e(v: f64, precision: usize, plus: bool, upper: bool) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let mut out = String::from(sign(v, plus, false));
    Digits::significant(v, precision + 1).write_exponent(&mut out, precision, upper);
    out
}

/// Go's `%f` with a precision (default 6).
pub fn format_f(v: f64, precision: usize, plus: bool) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let rounded = format!("{:.*}", precision, v.abs());
    let negative = v.is_sign_negative() && rounded.bytes().any(|b| b.is_ascii_digit() && b != b'0')
        || (v == 0.0 && v.is_sign_negative());
    let mut out = String::new();
    if negative {
        out.push('-');
    } else if plus {
        out.push('+');
    }
    out.push_str(&rounded);
    out
}

/// A value `printf` can format.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatArg {
    /// A string.
    Str(String),
    /// A float64.
    Float(f64),
    /// An int.
    Int(i64),
    /// A bool.
    Bool(bool),
    /// Anything else, already printed with `%v`.
    Other(String, &'static str),
}

impl FormatArg {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Float(_) => "float64",
            Self::Int(_) => "int",
            Self::Bool(_) => "bool",
            Self::Other(_, name) => name,
        }
    }

    /// `%v`.
    pub fn display(&self) -> String {
        match self {
            Self::Str(s) | Self::Other(s, _) => s.clone(),
            Self::Float(v) => format_g(*v, None),
            Self::Int(i) => i.to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %f %F %e %E %g %G %x %X %t %%`,
/// with flags `+ - 0 space #`, width and precision. Mismatches print as Go does (`%!d(float64=1.5)`).
pub fn sprintf(format: &str, args: &[FormatArg]) -> String {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut plus, mut minus, mut zero, mut space) = (false, false, false, false);
        while let Some(&flag) = chars.peek() {
            match flag {
                '+' => plus = true,
                '-' => minus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = None;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = Some(width.unwrap_or(0) * 10 + d as usize);
            chars.next();
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                p = p * 10 + d as usize;
                chars.next();
            }
            precision = Some(p);
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let bad = || format!("%!{verb}({}={})", arg.type_name(), arg.display());
        let text = match (verb, arg) {
            ('v', _) => match arg {
                FormatArg::Float(v) => format_g_flags(*v, precision, plus, space, false),
                other => other.display(),
            },
            ('s', FormatArg::Str(s)) => match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('s', FormatArg::Other(s, _)) => s.clone(),
            ('q', FormatArg::Str(s)) => go_quote(s),
            ('t', FormatArg::Bool(b)) => b.to_string(),
            ('d', FormatArg::Int(i)) => {
                let mut s = i.abs().to_string();
                if let Some(p) = precision {
                    while s.len() < p {
                        s.insert(0, '0');
                    }
                }
                format!(
                    "{}{s}",
                    if *i < 0 {
                        "-"
                    } else if plus {
                        "+"
                    } else {
                        ""
                    }
                )
            }
            ('x' | 'X', FormatArg::Int(i)) => {
                let s = if verb == 'x' {
                    format!("{:x}", i.unsigned_abs())
                } else {
                    format!("{:X}", i.unsigned_abs())
                };
                format!("{}{s}", if *i < 0 { "-" } else { "" })
            }
            ('x' | 'X', FormatArg::Str(s)) => s
                .bytes()
                .map(|b| {
                    if verb == 'x' {
                        format!("{b:02x}")
                    } else {
                        format!("{b:02X}")
                    }
                })
                .collect(),
            ('f' | 'F', FormatArg::Float(v)) => format_f(*v, precision.unwrap_or(6), plus),
            ('e' | 'E', FormatArg::Float(v)) => {
                format_e(*v, precision.unwrap_or(6), plus, verb == 'E')
            }
            ('g' | 'G', FormatArg::Float(v)) => {
                format_g_flags(*v, precision, plus, space, verb == 'G')
            }
            _ => bad(),
        };
        pad(&mut out, &text, width, minus, zero && !minus);
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.display()))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn pad(out: &mut String, text: &str, width: Option<usize>, left: bool, zero: bool) {
    let len = text.chars().count();
    let fill = width.unwrap_or(0).saturating_sub(len);
    if left {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if zero {
        let (sign, rest) = match text.strip_prefix(['-', '+']) {
            Some(rest) => (&text[..1], rest),
            None => ("", text),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(text);
    }
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_g(v: f64, precision: Option<usize>, expected: &str) {
        assert_eq!(format_g(v, precision), expected, "{v} {precision:?}");
    }

    #[test]
    fn float_formatting_matches_go() {
        // fmt.Sprint(float64)
        check_g(0.0, None, "0");
        check_g(1.0, None, "1");
        check_g(0.5, None, "0.5");
        check_g(100.0, None, "100");
        check_g(123456.0, None, "123456");
        check_g(1_000_000.0, None, "1e+06");
        check_g(1_234_567.0, None, "1.234567e+06");
        check_g(0.0001, None, "0.0001");
        check_g(0.00001, None, "1e-05");
        check_g(-2.5, None, "-2.5");
        check_g(95.33333333333333, None, "95.33333333333333");
        check_g(f64::NAN, None, "NaN");
        check_g(f64::INFINITY, None, "+Inf");
        check_g(f64::NEG_INFINITY, None, "-Inf");
        // fmt.Sprintf("%.4g", …), what humanize uses
        check_g(1.5, Some(4), "1.5");
        check_g(100.0, Some(4), "100");
        check_g(12.3456, Some(4), "12.35");
        check_g(999.96, Some(4), "1000");
        check_g(12345.0, Some(4), "1.234e+04");
        check_g(0.0, Some(4), "0");
        check_g(0.000012345, Some(4), "1.234e-05");
    }

    #[test]
    fn printf_matches_go() {
        let f = |v: f64| FormatArg::Float(v);
        assert_eq!(sprintf("%.2f", &[f(1.23456)]), "1.23");
        assert_eq!(sprintf("%.0f", &[f(2.5)]), "2");
        assert_eq!(sprintf("%f", &[f(1.0)]), "1.000000");
        assert_eq!(sprintf("%e", &[f(1234.5678)]), "1.234568e+03");
        assert_eq!(sprintf("%g", &[f(1e21)]), "1e+21");
        assert_eq!(sprintf("%5.1f%%", &[f(9.87)]), "  9.9%");
        assert_eq!(sprintf("%-6s|", &[FormatArg::Str("ab".into())]), "ab    |");
        assert_eq!(sprintf("%05.1f", &[f(-1.25)]), "-01.2");
        assert_eq!(sprintf("%d", &[FormatArg::Int(42)]), "42");
        assert_eq!(sprintf("%d", &[f(1.5)]), "%!d(float64=1.5)");
        assert_eq!(
            sprintf("%s %s", &[FormatArg::Str("a".into())]),
            "a %!s(MISSING)"
        );
        assert_eq!(
            sprintf("%s", &[FormatArg::Str("a".into()), FormatArg::Int(1)]),
            "a%!(EXTRA int=1)"
        );
        assert_eq!(sprintf("%v", &[f(1e6)]), "1e+06");
        assert_eq!(
            sprintf("%q", &[FormatArg::Str("a\"b".into())]),
            "\"a\\\"b\""
        );
        assert_eq!(sprintf("%.3f", &[f(f64::NAN)]), "NaN");
    }
}
