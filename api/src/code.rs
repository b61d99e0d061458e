//! One-time codes: uniform random digits from the operating system's secure source.

/// Makes a code of `length` digits (4 to 10, checked by the configuration).
pub fn generate(length: u32) -> Result<String, getrandom::Error> {
    let modulus = 10u64.pow(length);
    // Values at or above the largest multiple of `modulus` would make low codes more
    // likely; draw again instead.
    let limit = u64::MAX - u64::MAX % modulus;
    loop {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)?;
        let value = u64::from_le_bytes(bytes);
        if value < limit {
            return Ok(format!(
                "{:0width$}",
                value % modulus,
                width = length as usize
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_configured_number_of_digits() {
        for length in 4..=10 {
            let code = generate(length).expect("os random source");
            assert_eq!(code.len(), length as usize);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn codes_are_not_repeated() {
        let codes: std::collections::HashSet<String> = (0..200)
            .map(|_| generate(10).expect("os random source"))
            .collect();
        assert_eq!(codes.len(), 200);
    }
}
