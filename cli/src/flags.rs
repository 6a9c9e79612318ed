//! Parsers for numeric flags, so that a value no run can use is refused when the command line
//! is read, with what is allowed, instead of a panic, a NaN loss or an allocation failure later.

use rtdetr::{MAX_CLASSES, MAX_IMGSZ};

/// An integer of at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

/// A class count: 1 to [`MAX_CLASSES`].
pub fn class_count(s: &str) -> Result<usize, String> {
    let n = positive(s)?;
    if n > MAX_CLASSES {
        return Err(format!("at most {MAX_CLASSES}"));
    }
    Ok(n)
}

/// An image size: a positive multiple of 32, at most [`MAX_IMGSZ`].
pub fn imgsz(s: &str) -> Result<usize, String> {
    let n = positive(s)?;
    if !n.is_multiple_of(32) {
        return Err(format!(
            "not a multiple of 32 (the model's largest stride); try {}",
            n.next_multiple_of(32)
        ));
    }
    if n > MAX_IMGSZ {
        return Err(format!("at most {MAX_IMGSZ}"));
    }
    Ok(n)
}

fn finite(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("not a number ({e})"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err("must be a finite number".into())
    }
}

/// A number in [0, 1] (a probability or a threshold).
pub fn fraction(s: &str) -> Result<f64, String> {
    let v = finite(s)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must lie in [0, 1]".into())
    }
}

/// [`fraction`] as f32.
pub fn fraction_f32(s: &str) -> Result<f32, String> {
    fraction(s).map(|v| v as f32)
}

/// A finite number of at least 0.
pub fn non_negative(s: &str) -> Result<f64, String> {
    let v = finite(s)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        Err("must be at least 0".into())
    }
}

/// A finite number above 0.
pub fn positive_real(s: &str) -> Result<f64, String> {
    let v = finite(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err("must be above 0".into())
    }
}

/// A float type for inference: `f32` or `bf16`.
pub fn dtype(s: &str) -> Result<candle::DType, String> {
    match s {
        "f32" => Ok(candle::DType::F32),
        "bf16" => Ok(candle::DType::BF16),
        _ => Err("f32 or bf16".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_no_run_can_use() {
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err() && positive("-1").is_err() && positive("x").is_err());
        assert_eq!(imgsz("640"), Ok(640));
        for bad in ["0", "100", "100000", "18446744073709551584"] {
            assert!(imgsz(bad).is_err(), "{bad}");
        }
        assert_eq!(fraction("0.25"), Ok(0.25));
        for bad in ["nan", "NaN", "inf", "1.5", "-0.1"] {
            assert!(fraction(bad).is_err(), "{bad}");
        }
        assert!(non_negative("-1").is_err() && non_negative("nan").is_err());
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(positive_real("0").is_err() && positive_real("inf").is_err());
        assert!(class_count("80").is_ok() && class_count("100000000").is_err());
    }
}
