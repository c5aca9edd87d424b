//! Known-answer vectors for every identifier check character (tests/data/identifiers.json).

use certseal_core::{CreditCode, LicenceId, ResidentId, TypeCode};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/identifiers.json")).unwrap()
}

fn list<'a>(v: &'a Value, kind: &str, which: &str) -> Vec<&'a str> {
    let items: Vec<&str> = v[kind][which]
        .as_array()
        .unwrap_or_else(|| panic!("{kind}.{which} in the vectors"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(!items.is_empty());
    items
}

#[test]
fn credit_codes() {
    let v = vectors();
    for s in list(&v, "credit_code", "valid") {
        let c: CreditCode = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(c.as_str(), s);
    }
    for s in list(&v, "credit_code", "invalid") {
        assert!(s.parse::<CreditCode>().is_err(), "{s} must be refused");
    }
}

#[test]
fn resident_ids() {
    let v = vectors();
    for s in list(&v, "resident_id", "valid") {
        s.parse::<ResidentId>()
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    for s in list(&v, "resident_id", "invalid") {
        assert!(s.parse::<ResidentId>().is_err(), "{s} must be refused");
    }
}

#[test]
fn licence_ids() {
    let v = vectors();
    for s in list(&v, "licence_id", "valid") {
        let id: LicenceId = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(id.as_str(), s);
        // Building the same ID from its parts computes the same check character.
        let parts: Vec<&str> = s.split('.').collect();
        let built = LicenceId::new(
            &parts[5].parse::<TypeCode>().unwrap(),
            &parts[6].parse::<CreditCode>().unwrap(),
            parts[7],
            parts[8].parse().unwrap(),
        )
        .unwrap();
        assert_eq!(built, id);
    }
    for s in list(&v, "licence_id", "invalid") {
        assert!(s.parse::<LicenceId>().is_err(), "{s} must be refused");
    }
}

#[test]
fn every_single_character_change_of_a_credit_code_is_caught() {
    // GB 32100's check catches every single substitution.
    let good = "91440300L83341734R";
    let alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    for i in 0..18 {
        for c in alphabet.chars() {
            let mut s: Vec<char> = good.chars().collect();
            if s[i] == c {
                continue;
            }
            s[i] = c;
            let s: String = s.into_iter().collect();
            assert!(s.parse::<CreditCode>().is_err(), "{s} must be refused");
        }
    }
}
