//! A population of numbers on the WATI side, for a benchmark that wants the mix a real
//! audience has: some numbers are not on WhatsApp, some messages are accepted and then
//! fail, some are accepted and never heard of again.
//!
//! Each share is a percentage of all numbers. A number's fate is chosen by a hash of the
//! number alone (no seed, no state), so the same number meets the same fate in every call
//! and every run, and a test can ask [`Population::fate`] what a number will meet. The
//! shares take disjoint slices of the hash's range, in the order not on WhatsApp, failed
//! receipt, no receipt: raising one share never moves a number from one of the others.
//! A script queued for a number wins over its fate.
//!
//! What each fate looks like is WATI's, as the sandbox models it elsewhere (`v1.rs`,
//! `v3.rs`, `receipt.rs`): "Invalid WhatsApp number" for a number without WhatsApp, and
//! `templateMessageFailed` with 131026 ("Message undeliverable", Meta's code for a message
//! WhatsApp could not deliver) for a failed one.

use serde::{Deserialize, Serialize};

use crate::ScriptedReply;

/// Meta's error for a message that could not be delivered, as WATI forwards it.
const UNDELIVERABLE_CODE: &str = "131026";
/// The hash's range is cut in hundredths of a percent.
const SLICES: u64 = 10_000;

/// The shares of numbers that do not get a normal WhatsApp delivery, in percent (0 to
/// 100, to a hundredth; together at most 100).
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Not on WhatsApp: v3 answers the recipient with the error "Invalid WhatsApp number"
    /// (`isValidWhatsAppNumber: false` in the v2 shape), v1 with `{"result": false,
    /// "info": "Invalid WhatsApp number", "validWhatsAppNumber": false}`; nothing is sent.
    #[serde(default, rename = "notOnWhatsAppPercent")]
    pub not_on_whatsapp_percent: f64,
    /// Accepted, then a `templateMessageFailed` receipt with 131026.
    #[serde(default, rename = "failedReceiptPercent")]
    pub failed_receipt_percent: f64,
    /// Accepted, and no receipt at all.
    #[serde(default, rename = "noReceiptPercent")]
    pub no_receipt_percent: f64,
}

/// What the [`Population`] makes of one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Fate {
    /// Delivered and read, as usual.
    OnWhatsApp,
    NotOnWhatsApp,
    FailedReceipt,
    NoReceipt,
}

impl Population {
    /// Each share within 0 to 100, and all together at most 100.
    pub fn check(&self) -> Result<(), String> {
        let shares = [
            ("not on WhatsApp", self.not_on_whatsapp_percent),
            ("failed receipt", self.failed_receipt_percent),
            ("no receipt", self.no_receipt_percent),
        ];
        if let Some((name, share)) = shares
            .iter()
            .find(|(_, share)| !(0.0..=100.0).contains(share))
        {
            return Err(format!(
                "the {name} share must be 0 to 100 percent, not {share}"
            ));
        }
        let total: f64 = shares.iter().map(|(_, share)| share).sum();
        if total > 100.0 {
            return Err(format!(
                "the shares add up to {total} percent, more than 100"
            ));
        }
        Ok(())
    }

    /// The fate of `phone` (its digits; anything else in it is ignored).
    pub fn fate(&self, phone: &str) -> Fate {
        let slice = slice_of(phone);
        let mut upper = 0;
        for (share, fate) in [
            (self.not_on_whatsapp_percent, Fate::NotOnWhatsApp),
            (self.failed_receipt_percent, Fate::FailedReceipt),
            (self.no_receipt_percent, Fate::NoReceipt),
        ] {
            upper += slices(share);
            if slice < upper {
                return fate;
            }
        }
        Fate::OnWhatsApp
    }

    /// The script a number's fate amounts to, for a number without a script of its own;
    /// `None` for a number on WhatsApp. It carries no delay or status: the call's own
    /// latency and answer stand.
    pub(crate) fn script_for(&self, phone: &str) -> Option<ScriptedReply> {
        let script = match self.fate(phone) {
            Fate::OnWhatsApp => return None,
            Fate::NotOnWhatsApp => ScriptedReply {
                valid_whatsapp_number: Some(false),
                ..ScriptedReply::default()
            },
            Fate::FailedReceipt => ScriptedReply {
                failed_code: Some(UNDELIVERABLE_CODE.to_owned()),
                ..ScriptedReply::default()
            },
            Fate::NoReceipt => ScriptedReply {
                no_receipts: Some(true),
                ..ScriptedReply::default()
            },
        };
        Some(script)
    }
}

/// A share in hundredths of a percent of the hash's range.
fn slices(percent: f64) -> u64 {
    (percent.clamp(0.0, 100.0) * 100.0).round() as u64
}

/// Where a number falls in `0..SLICES`: FNV-1a over its digits, then SplitMix64's
/// finalizer, so numbers that differ in their last digit land far apart. Both are fixed
/// functions: the answer is the same on every machine and in every release.
fn slice_of(phone: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for digit in phone.bytes().filter(u8::is_ascii_digit) {
        hash ^= u64::from(digit);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    hash % SLICES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn population(not_on_whatsapp: f64, failed: f64, none: f64) -> Population {
        Population {
            not_on_whatsapp_percent: not_on_whatsapp,
            failed_receipt_percent: failed,
            no_receipt_percent: none,
        }
    }

    fn phones(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("91{:010}", 9_000_000_000_u64 + i as u64))
    }

    #[test]
    fn each_share_takes_about_its_part_of_many_numbers() {
        let shares = population(12.0, 5.0, 3.0);
        let mut counts = [0usize; 4];
        for phone in phones(20_000) {
            counts[match shares.fate(&phone) {
                Fate::OnWhatsApp => 0,
                Fate::NotOnWhatsApp => 1,
                Fate::FailedReceipt => 2,
                Fate::NoReceipt => 3,
            }] += 1;
        }
        // 20,000 draws: a standard deviation of at most 0.23 points; allow about four.
        for (count, percent) in counts.iter().zip([80.0, 12.0, 5.0, 3.0]) {
            let share = *count as f64 / 200.0;
            assert!(
                (share - percent).abs() < 1.0,
                "{share} for {percent}: {counts:?}"
            );
        }
    }

    #[test]
    fn a_number_keeps_its_fate_and_only_its_digits_count() {
        let shares = population(50.0, 0.0, 0.0);
        for phone in phones(100) {
            let fate = shares.fate(&phone);
            assert_eq!(shares.fate(&phone), fate);
            assert_eq!(shares.fate(&format!("+{phone}")), fate);
        }
    }

    #[test]
    fn raising_one_share_moves_no_number_out_of_another() {
        let before = population(10.0, 5.0, 5.0);
        let after = population(10.0, 20.0, 5.0);
        for phone in phones(5_000) {
            if before.fate(&phone) == Fate::NotOnWhatsApp {
                assert_eq!(after.fate(&phone), Fate::NotOnWhatsApp, "{phone}");
            }
            if before.fate(&phone) == Fate::FailedReceipt {
                assert_eq!(after.fate(&phone), Fate::FailedReceipt, "{phone}");
            }
        }
    }

    #[test]
    fn no_shares_leave_everyone_on_whatsapp_and_a_full_share_takes_everyone() {
        assert!(phones(1_000).all(|p| Population::default().fate(&p) == Fate::OnWhatsApp));
        let everyone = population(0.0, 0.0, 100.0);
        assert!(phones(1_000).all(|p| everyone.fate(&p) == Fate::NoReceipt));
    }

    #[test]
    fn shares_must_be_percentages_that_fit_together() {
        assert_eq!(population(12.0, 5.5, 0.25).check(), Ok(()));
        assert_eq!(population(50.0, 50.0, 0.0).check(), Ok(()));
        assert!(population(-1.0, 0.0, 0.0).check().is_err());
        assert!(population(0.0, 101.0, 0.0).check().is_err());
        assert!(population(0.0, 0.0, f64::NAN).check().is_err());
        assert!(population(60.0, 30.0, 20.0).check().is_err());
    }

    #[test]
    fn each_fate_is_the_script_wati_would_answer_with() {
        let phone = phones(10_000)
            .find(|p| population(10.0, 10.0, 10.0).fate(p) == Fate::FailedReceipt)
            .expect("some number fails");
        let script = population(10.0, 10.0, 10.0)
            .script_for(&phone)
            .expect("a script");
        assert_eq!(script.failed_code.as_deref(), Some("131026"));
        assert_eq!(script.delay_ms, None);
        assert_eq!(script.status, None);
        assert!(Population::default().script_for(&phone).is_none());
    }
}
