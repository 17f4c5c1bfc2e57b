//! Kubernetes resource quantities (`250m`, `1.5`, `128Mi`, `1e3`, `2G`), read exactly
//! into nano-units so that sums and maxima are what the scheduler computes.

use std::fmt;

/// A quantity in nano-units (1 = 10⁻⁹ of the base unit: cores, bytes, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(pub i128);

const NANO: i128 = 1_000_000_000;

/// Text that is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kubernetes quantity (expected e.g. 250m, 1.5, 128Mi, 2G, 1e3)")]
pub struct QuantityError(pub String);

impl Quantity {
    /// Parses a quantity as the API server does (rounding fractions of a nano-unit up).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = || QuantityError(text.to_string());
        let s = text.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err());
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let digits = format!("{int_part}{frac_part}");
        let mantissa: i128 = digits.parse().map_err(|_| err())?;
        // value = mantissa * 10^(exp10 - frac_len) * 2^exp2
        let mut exp10: i32 = -(frac_part.len() as i32);
        let mut exp2: u32 = 0;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            s if s.starts_with(['e', 'E']) => {
                let e: i32 = s[1..].parse().map_err(|_| err())?;
                if !(-30..=30).contains(&e) {
                    return Err(err());
                }
                exp10 += e;
            }
            _ => return Err(err()),
        }
        // In nano-units: multiply by 10^9 first.
        exp10 += 9;
        let mut value = mantissa
            .checked_mul(1i128.checked_shl(exp2).ok_or_else(err)?)
            .ok_or_else(err)?;
        if exp10 >= 0 {
            value = value
                .checked_mul(10i128.checked_pow(exp10 as u32).ok_or_else(err)?)
                .ok_or_else(err)?;
        } else {
            let div = 10i128.checked_pow((-exp10) as u32).ok_or_else(err)?;
            value = (value + div - 1) / div;
        }
        Ok(Quantity(if negative { -value } else { value }))
    }

    /// The sum of two quantities (saturating).
    pub fn plus(self, other: Self) -> Self {
        Quantity(self.0.saturating_add(other.0))
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Text for a resource: CPU in cores or millicores, memory-like in binary units.
    pub fn display_for(self, resource: &str) -> String {
        if resource == "cpu" {
            let milli =
                self.0.div_euclid(NANO / 1000) + i128::from(self.0.rem_euclid(NANO / 1000) != 0);
            if milli % 1000 == 0 {
                format!("{}", milli / 1000)
            } else {
                format!("{milli}m")
            }
        } else {
            let whole = self.0.div_euclid(NANO) + i128::from(self.0.rem_euclid(NANO) != 0);
            for (suffix, shift) in [
                ("Ei", 60),
                ("Pi", 50),
                ("Ti", 40),
                ("Gi", 30),
                ("Mi", 20),
                ("Ki", 10),
            ] {
                let unit = 1i128 << shift;
                if whole != 0 && whole % unit == 0 {
                    return format!("{}{suffix}", whole / unit);
                }
            }
            format!("{whole}")
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_for("memory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> i128 {
        Quantity::parse(s).unwrap().0
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(q("1"), NANO);
        assert_eq!(q("250m"), NANO / 4);
        assert_eq!(q("0.5"), NANO / 2);
        assert_eq!(q("1.5"), 3 * NANO / 2);
        assert_eq!(q("128Mi"), 128 * (1 << 20) * NANO);
        assert_eq!(q("1Gi"), (1 << 30) * NANO);
        assert_eq!(q("2G"), 2_000_000_000 * NANO);
        assert_eq!(q("1e3"), 1000 * NANO);
        assert_eq!(q("1E3"), 1000 * NANO);
        assert_eq!(q("100k"), 100_000 * NANO);
        assert_eq!(q("1n"), 1);
        assert_eq!(q("1u"), 1000);
        assert_eq!(q(".5"), NANO / 2);
        assert_eq!(q("-1"), -NANO);
        assert_eq!(q("1Ei"), (1i128 << 60) * NANO);
        for bad in ["", "m", "1.2.3", "abc", "1Xi", "1e", "1e99", "--1", "1 Mi"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn displays_per_resource() {
        assert_eq!(Quantity::parse("250m").unwrap().display_for("cpu"), "250m");
        assert_eq!(Quantity::parse("2").unwrap().display_for("cpu"), "2");
        assert_eq!(
            Quantity::parse("1500m").unwrap().display_for("cpu"),
            "1500m"
        );
        assert_eq!(
            Quantity::parse("128Mi").unwrap().display_for("memory"),
            "128Mi"
        );
        assert_eq!(
            Quantity::parse("1024Mi").unwrap().display_for("memory"),
            "1Gi"
        );
        assert_eq!(
            Quantity::parse("1000").unwrap().display_for("memory"),
            "1000"
        );
        assert_eq!(Quantity::parse("1").unwrap().to_string(), "1");
    }
}
