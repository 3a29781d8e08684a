//! `{{variable}}` templates: filled from the call's variables; an unknown variable is left
//! as written (so a missing value is visible, and equations can tell it does not exist).

use std::collections::HashMap;

pub fn fill(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = after[..close].trim();
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_variables_are_filled_and_unknown_ones_left_as_written() {
        let vars = HashMap::from([("name".to_owned(), "Ada".to_owned())]);
        assert_eq!(fill("Hi {{name}}, {{ name }}! {{tier}} {{", &vars), "Hi Ada, Ada! {{tier}} {{");
        assert_eq!(fill("ünï {{name}}}", &vars), "ünï Ada}");
    }
}
