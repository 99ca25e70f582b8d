//! The rules for the JSON the broker stores and sends (payloads, results,
//! errors). PostgreSQL writes every number out in full (`1e100000` becomes a
//! hundred thousand digits) and stores no U+0000; listeners must parse what the
//! stream sends, and common parsers refuse very deep nesting (serde_json
//! beyond [`MAX_DEPTH`]) and very long integers (Python beyond
//! [`MAX_INTEGER_DIGITS`] digits). So a value is measured as PostgreSQL will
//! write it: on the way in from a request ([`check_value`]), and on the way out
//! for rows another application wrote through SQL ([`check_stored`]).

use serde_json::Value;

/// Arrays and objects nested in one another, at most (serde_json's own limit:
/// a request nested deeper does not even parse).
pub const MAX_DEPTH: usize = 127;
/// Digits of an integer as written out, at most (Python's `json` refuses
/// longer ones by default).
pub const MAX_INTEGER_DIGITS: usize = 4300;
/// PostgreSQL's `numeric`: digits before and after the decimal point, at most.
const PG_INTEGER_DIGITS: u64 = 131_072;
const PG_SCALE: u64 = 16_383;

/// Why a value cannot be stored or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Written out as PostgreSQL stores it, it is longer than the limit.
    TooLarge,
    /// Arrays and objects nested more than [`MAX_DEPTH`] deep.
    TooDeep,
    /// A number outside what PostgreSQL's `numeric` holds.
    NumberOutOfRange,
    /// An integer written out with more than [`MAX_INTEGER_DIGITS`] digits.
    IntegerTooLong,
    /// A string with the character U+0000, which PostgreSQL does not store.
    Nul,
}

impl Refusal {
    /// What is wrong, for an error message (`{field}: {description}`).
    pub fn describe(self, limit: u64) -> String {
        match self {
            Refusal::TooLarge => format!(
                "written out as it is stored (every number in full digits), it is larger than {limit} bytes"
            ),
            Refusal::TooDeep => {
                format!("arrays and objects may be nested at most {MAX_DEPTH} deep")
            }
            Refusal::NumberOutOfRange => format!(
                "a number is out of range (at most {PG_INTEGER_DIGITS} digits before and {PG_SCALE} after the decimal point)"
            ),
            Refusal::IntegerTooLong => format!(
                "a number would be written out as an integer of more than {MAX_INTEGER_DIGITS} digits, which many JSON parsers refuse"
            ),
            Refusal::Nul => "strings may not contain the character U+0000".into(),
        }
    }
}

/// The length of `value` as PostgreSQL's `jsonb` writes it (which is what the
/// stream sends), or why it cannot be stored or sent. Stops as soon as the
/// length passes `limit`.
pub fn check_value(value: &Value, limit: u64) -> Result<u64, Refusal> {
    let mut measure = Measure { total: 0, limit };
    measure.value(value, 0)?;
    Ok(measure.total)
}

struct Measure {
    total: u64,
    limit: u64,
}

impl Measure {
    fn add(&mut self, n: u64) -> Result<(), Refusal> {
        self.total += n;
        if self.total > self.limit {
            return Err(Refusal::TooLarge);
        }
        Ok(())
    }

    fn value(&mut self, value: &Value, depth: usize) -> Result<(), Refusal> {
        match value {
            Value::Null | Value::Bool(true) => self.add(4),
            Value::Bool(false) => self.add(5),
            Value::Number(n) => self.add(written_number_len(&n.to_string())?),
            Value::String(s) => self.add(string_len(s)?),
            Value::Array(items) => {
                if depth >= MAX_DEPTH {
                    return Err(Refusal::TooDeep);
                }
                // "[" a ", " b "]"
                self.add(2 + 2 * items.len().saturating_sub(1) as u64)?;
                items
                    .iter()
                    .try_for_each(|item| self.value(item, depth + 1))
            }
            Value::Object(map) => {
                if depth >= MAX_DEPTH {
                    return Err(Refusal::TooDeep);
                }
                // "{" k ": " v ", " ... "}"
                self.add(2 + 2 * map.len().saturating_sub(1) as u64)?;
                map.iter().try_for_each(|(key, item)| {
                    self.add(string_len(key)? + 2)?;
                    self.value(item, depth + 1)
                })
            }
        }
    }
}

/// A JSON string as PostgreSQL writes it: quoted, with `"`, `\` and control
/// characters escaped.
fn string_len(s: &str) -> Result<u64, Refusal> {
    let mut len = 2u64;
    for c in s.chars() {
        len += match c {
            '\0' => return Err(Refusal::Nul),
            '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8() as u64,
        };
    }
    Ok(len)
}

/// The length of a JSON number (as the client wrote it) once PostgreSQL's
/// `numeric` writes it out: plain digits, no exponent, the scale kept.
fn written_number_len(text: &str) -> Result<u64, Refusal> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    // An exponent too large for an i64 is far out of range either way.
    let exponent: i64 = exponent.parse().map_err(|_| Refusal::NumberOutOfRange)?;
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = integer.len() as i64 + fraction.len() as i64;
    let scale = (fraction.len() as i64).saturating_sub(exponent).max(0) as u64;
    let leading_zeros = integer
        .bytes()
        .chain(fraction.bytes())
        .take_while(|&b| b == b'0')
        .count() as i64;
    let zero = leading_zeros == digits;
    // Where the decimal point falls among the digits, once the exponent moved it.
    let point = (integer.len() as i64).saturating_add(exponent);
    let integer_digits = if zero || point <= leading_zeros {
        1
    } else {
        (point - leading_zeros) as u64
    };
    if integer_digits > PG_INTEGER_DIGITS || scale > PG_SCALE {
        return Err(Refusal::NumberOutOfRange);
    }
    if scale == 0 && integer_digits > MAX_INTEGER_DIGITS as u64 {
        return Err(Refusal::IntegerTooLong);
    }
    let sign = u64::from(negative && !zero);
    let fraction_len = if scale > 0 { 1 + scale } else { 0 };
    Ok(sign + integer_digits + fraction_len)
}

/// Check the stored text of a value (from a row, as PostgreSQL wrote it):
/// at most `limit` bytes, nesting and integers within what listeners parse.
pub fn check_stored(text: &str, limit: u64) -> Result<(), Refusal> {
    if text.len() as u64 > limit {
        return Err(Refusal::TooLarge);
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // Digits of the number being read, and whether it has a decimal point.
    let mut run = 0usize;
    let mut decimal = false;
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'0'..=b'9' => {
                run += 1;
                continue;
            }
            b'.' | b'e' | b'E' if run > 0 => {
                decimal = true;
                continue;
            }
            _ => {}
        }
        if run > MAX_INTEGER_DIGITS && !decimal {
            return Err(Refusal::IntegerTooLong);
        }
        run = 0;
        decimal = false;
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Refusal::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if run > MAX_INTEGER_DIGITS && !decimal {
        return Err(Refusal::IntegerTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What PostgreSQL 15 prints for `'<text>'::jsonb` (checked with psql).
    const POSTGRES_WRITES: &[(&str, &str)] = &[
        ("1.5e3", "1500"),
        ("1e2", "100"),
        ("1E+2", "100"),
        ("-0.0", "0.0"),
        ("0.000123", "0.000123"),
        ("123.4500", "123.4500"),
        ("1.23e-5", "0.0000123"),
        ("-12e-1", "-1.2"),
        ("0e10", "0"),
        ("0.5", "0.5"),
        ("-5", "-5"),
    ];

    #[test]
    fn numbers_measure_as_postgres_writes_them() {
        for (given, written) in POSTGRES_WRITES {
            assert_eq!(
                written_number_len(given),
                Ok(written.len() as u64),
                "{given} is written {written}"
            );
        }
        // psql: length(('12345e100000'::jsonb)::text) = 100005
        assert_eq!(
            written_number_len("12345e100000"),
            Err(Refusal::IntegerTooLong)
        );
        assert_eq!(written_number_len("1.5e-16382"), Ok(2 + 16_383));
        assert_eq!(
            written_number_len("1e-16384"),
            Err(Refusal::NumberOutOfRange)
        );
        assert_eq!(
            written_number_len("1e200000"),
            Err(Refusal::NumberOutOfRange)
        );
        assert_eq!(
            written_number_len("1e99999999999999999999"),
            Err(Refusal::NumberOutOfRange)
        );
        assert_eq!(written_number_len("1.5e4299"), Ok(4300));
        assert_eq!(written_number_len("1.5e4300"), Err(Refusal::IntegerTooLong));
        assert_eq!(
            written_number_len("1.25e4300"),
            Err(Refusal::IntegerTooLong)
        );
        assert_eq!(written_number_len("1.25e4299"), Ok(4300));
        assert_eq!(written_number_len("1.25e4298"), Ok(4299));
        // With a fraction it is no integer: parsers read it as a float.
        let long_decimal = format!("1{}.5", "0".repeat(5000));
        assert_eq!(written_number_len(&long_decimal), Ok(5001 + 2));
    }

    #[test]
    fn values_measure_as_jsonb_text() {
        // psql: ('{"a": [1, 2, "x\ny"], "b": null}'::jsonb)::text
        let value = json!({"a": [1, 2, "x\ny"], "b": null});
        assert_eq!(
            check_value(&value, 1000),
            Ok(r#"{"a": [1, 2, "x\ny"], "b": null}"#.len() as u64)
        );
        assert_eq!(check_value(&json!("\u{1}"), 100), Ok(8));
        assert_eq!(check_value(&json!(["a\u{0}"]), 100), Err(Refusal::Nul));
        assert_eq!(check_value(&json!([1, 2, 3]), 8), Err(Refusal::TooLarge));
        let amplified: Value = serde_json::from_str("[1e4000, 1e4000, 1e4000]").unwrap();
        assert_eq!(check_value(&amplified, 10_000), Err(Refusal::TooLarge));
    }

    #[test]
    fn stored_text_within_what_listeners_parse() {
        assert_eq!(check_stored(r#"{"a": [1, "[[[["]}"#, 100), Ok(()));
        let deep = format!("{}1{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(check_stored(&deep, 1000), Err(Refusal::TooDeep));
        let fine = format!("{}1{}", "[".repeat(127), "]".repeat(127));
        assert_eq!(check_stored(&fine, 1000), Ok(()));
        let long = format!("[1, {}]", "9".repeat(4301));
        assert_eq!(check_stored(&long, 10_000), Err(Refusal::IntegerTooLong));
        let decimal = format!("[1, {}.5]", "9".repeat(4301));
        assert_eq!(check_stored(&decimal, 10_000), Ok(()));
        let in_string = format!("[\"{}\"]", "9".repeat(4301));
        assert_eq!(check_stored(&in_string, 10_000), Ok(()));
        assert_eq!(check_stored("[1, 2]", 5), Err(Refusal::TooLarge));
        assert_eq!(check_stored(r#"["a\"[[", 1]"#, 100), Ok(()));
    }
}
