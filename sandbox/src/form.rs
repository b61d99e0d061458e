//! `application/x-www-form-urlencoded`, both ways: Twilio's API takes its parameters in
//! this form, and posts its status callbacks in it. (A few lines here rather than a
//! dependency for two functions.)

/// The pairs of a form body, in order, decoded (`+` is a space, `%XX` a byte; a broken
/// escape is kept as written, and bytes that are not UTF-8 are replaced).
pub(crate) fn parse(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let at = pair.iter().position(|b| *b == b'=').unwrap_or(pair.len());
            let value = pair.get(at + 1..).unwrap_or_default();
            (decode(&pair[..at]), decode(value))
        })
        .collect()
}

fn decode(text: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        bytes.push(byte);
                        i += 2;
                    }
                    None => bytes.push(b'%'),
                }
            }
            byte => bytes.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A form body of `pairs`, in order: letters, digits and `-._*` as they are, a space
/// as `+`, every other byte as `%XX` (as browsers and Twilio's own libraries encode).
pub(crate) fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut body = String::new();
    for (name, value) in pairs {
        if !body.is_empty() {
            body.push('&');
        }
        encode_into(&mut body, name);
        body.push('=');
        encode_into(&mut body, value);
    }
    body
}

fn encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_form_is_decoded_in_order_with_its_escapes() {
        assert_eq!(
            parse(b"To=%2B447700900001&Body=Your+code%3A+123456%0A%40example.com+%23123456&Empty=&Bare"),
            pairs(&[
                ("To", "+447700900001"),
                ("Body", "Your code: 123456\n@example.com #123456"),
                ("Empty", ""),
                ("Bare", ""),
            ])
        );
        assert_eq!(parse(b""), pairs(&[]));
        assert_eq!(
            parse(b"a=100%&b=%zz"),
            pairs(&[("a", "100%"), ("b", "%zz")])
        );
        assert_eq!(
            parse("Body=caf%C3%A9".as_bytes()),
            pairs(&[("Body", "café")])
        );
    }

    #[test]
    fn encoding_then_decoding_gives_the_pairs_back() {
        let list = [
            ("To", "+447700900001"),
            ("Body", "Код: 123456 & more=yes"),
            ("StatusCallback", "http://127.0.0.1:8080/sms?x=1&y=2"),
        ];
        let body = encode(list);
        assert_eq!(
            body,
            "To=%2B447700900001&Body=%D0%9A%D0%BE%D0%B4%3A+123456+%26+more%3Dyes\
             &StatusCallback=http%3A%2F%2F127.0.0.1%3A8080%2Fsms%3Fx%3D1%26y%3D2"
        );
        assert_eq!(parse(body.as_bytes()), pairs(&list));
    }
}
