//! Distinct valid phone numbers for a run, checked with the api's own parser.

use otp_api::phone::PhoneNumber;

/// `count` distinct valid Indian mobile numbers, from 91 90000 00000 upwards.
pub fn distinct(count: usize) -> Vec<PhoneNumber> {
    (0u64..)
        .map(|i| 919_000_000_000 + i * 7)
        .filter_map(|n| otp_api::phone::parse(&n.to_string()).ok())
        .take(count)
        .collect()
}

/// `count` distinct valid UK mobile numbers, from 44 7911 100000 upwards: the reach
/// stage's phones, in a country SMS may go to (44), unlike [`distinct`]'s.
pub fn uk_mobiles(count: usize) -> Vec<PhoneNumber> {
    (0u64..1_000_000)
        .map(|i| 447_911_100_000 + i)
        .filter_map(|n| otp_api::phone::parse(&n.to_string()).ok())
        .take(count)
        .collect()
}
