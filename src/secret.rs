//! A string that must never be shown: secret access keys, session tokens,
//! IMDS tokens. `Debug` and `Display` print `***` and the bytes are zeroed on drop.

use std::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// A secret value; read it only through [`Secret::expose`], close to where it is used.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The plain value, for the one place that must send it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (an SDK treats an empty secret as absent).
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// The last four characters of an access key id: enough to tell two keys
/// apart on a dashboard, useless to an attacker.
pub fn key_id_suffix(key_id: &str) -> String {
    let chars: Vec<char> = key_id.trim().chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("wJalrXUtnFEMI/K7MDENG".into());
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "wJalrXUtnFEMI/K7MDENG");
    }

    #[test]
    fn suffix_keeps_four_characters() {
        assert_eq!(key_id_suffix("ASIAEXAMPLE1234"), "1234");
        assert_eq!(key_id_suffix("AB"), "AB");
        assert_eq!(key_id_suffix(""), "");
        assert_eq!(key_id_suffix("ÄÖÜßé"), "ÖÜßé");
    }
}
