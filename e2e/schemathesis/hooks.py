"""Schemathesis hooks for docs/openapi.json: how to make the string formats it names.

A phone's validity depends on numbering plans no JSON schema can express, so the
document names the formats `phone` and `otp-code`, and these strategies make real
values for them: schema-valid requests are then requests the api must accept.
"""

import schemathesis
from hypothesis import strategies as st

# Real mobile numbers (India's 98765 block, the UK's 7911 block), in every spelling
# the api takes.
_numbers = st.integers(min_value=0, max_value=99999)
schemathesis.openapi.format(
    "phone",
    _numbers.flatmap(
        lambda n: st.sampled_from(
            [
                f"9198765{n:05d}",
                f"+91 98765 {n:05d}",
                f"+91-98765-{n:05d}",
                f"+44 7911 1{n:05d}",
            ]
        )
    ),
)
schemathesis.openapi.format("otp-code", st.from_regex(r"[0-9]{6}", fullmatch=True))
