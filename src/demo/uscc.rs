//! Unified social credit codes (统一社会信用代码, GB 32100-2015) and the organisation codes
//! (组织机构代码, GB 11714) embedded in them.
//!
//! Layout: 1 registration-authority char + 1 organisation-type char + 6-digit region code
//! (GB/T 2260) + 9-char organisation code (8 body chars + GB 11714 check char) + 1 GB 32100
//! check char.

/// The 31 characters GB 32100 allows; a character's value is its index here
/// (I, O, S, V, Z are left out so codes read unambiguously).
const USCC_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// 3^i mod 31 for positions 1..=17.
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_CHARS.iter().position(|&x| x == c).map(|i| i as u32)
}

/// The GB 32100 check character for the first 17 characters of a unified social credit code,
/// or `None` when `first17` is not 17 characters from the GB 32100 alphabet.
pub fn uscc_check_char(first17: &str) -> Option<char> {
    let bytes = first17.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in bytes.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(c)? * w;
    }
    let v = (31 - sum % 31) % 31;
    Some(USCC_CHARS[v as usize] as char)
}

/// Whether `code` is an 18-character unified social credit code whose last character is the
/// GB 32100 check character of the first 17. (The embedded GB 11714 check is not required:
/// codes for some kinds of body carry organisation codes issued under other rules.)
pub fn is_valid_uscc(code: &str) -> bool {
    let bytes = code.as_bytes();
    bytes.len() == 18 && code.is_ascii() && uscc_check_char(&code[..17]).is_some_and(|c| c as u8 == bytes[17])
}

/// The GB 11714 check character of an organisation code's 8-character body (digits and
/// upper-case letters), or `None` for a malformed body.
pub fn org_code_check_char(body8: &str) -> Option<char> {
    let bytes = body8.as_bytes();
    if bytes.len() != 8 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in bytes.iter().zip(ORG_WEIGHTS) {
        let v = match c {
            b'0'..=b'9' => (c - b'0') as u32,
            b'A'..=b'Z' => (c - b'A') as u32 + 10,
            _ => return None,
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        d => char::from(b'0' + d as u8),
    })
}

/// Builds a full code from its parts; the caller supplies a body made of GB 32100 characters.
pub(super) fn make_uscc(reg: &str, region6: &str, org_body8: &str) -> String {
    let org_check = org_code_check_char(org_body8).expect("organisation code body");
    let mut s = String::with_capacity(18);
    s.push_str(reg);
    s.push_str(region6);
    s.push_str(org_body8);
    s.push(org_check);
    let check = uscc_check_char(&s).expect("17 GB 32100 characters");
    s.push(check);
    s
}

/// The alphabet a generated organisation-code body may use (GB 32100 characters, so the
/// whole credit code stays within the alphabet).
pub(super) const BODY_CHARS: &[u8; 31] = USCC_CHARS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_example_validates() {
        // The example code printed in GB 32100 explainers and many validator libraries.
        assert_eq!(uscc_check_char("91350100M000100Y4"), Some('3'));
        assert!(is_valid_uscc("91350100M000100Y43"));
        assert_eq!(org_code_check_char("M000100Y"), Some('4'));
    }

    #[test]
    fn rejects_bad_codes() {
        assert!(!is_valid_uscc("91350100M000100Y44"));
        assert!(!is_valid_uscc("91350100M000100Y4"));
        assert!(!is_valid_uscc("91350100M000100Y433"));
        assert!(!is_valid_uscc("91350100M0001O0Y43")); // letter O is not in the alphabet
        assert!(!is_valid_uscc("91350100m000100Y43"));
        assert!(!is_valid_uscc("９1350100M000100Y4"));
        assert_eq!(uscc_check_char("short"), None);
    }

    #[test]
    fn made_codes_validate() {
        let c = make_uscc("11", "540202", "01234567");
        assert_eq!(c.len(), 18);
        assert!(is_valid_uscc(&c));
        let c = make_uscc("91", "540200", "MA6TXY12");
        assert!(is_valid_uscc(&c));
        assert_eq!(&c[8..16], "MA6TXY12");
        assert_eq!(org_code_check_char(&c[8..16]), Some(c.as_bytes()[16] as char));
    }
}
