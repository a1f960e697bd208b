//! Actions and their weights (`rec.action-weights`).

use std::fmt;

/// What an action means beyond its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Plain,
    /// The user bought the item: never recommend it to them again.
    Purchase,
    /// Negative feedback: never recommend it to them again.
    Dislike,
    /// Weight scales with `VALUE - 3` (1..5 stars); 1 or 2 stars also count as a dislike.
    Rating,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: String,
    pub weight: f64,
    pub kind: ActionKind,
}

impl Action {
    /// The event weight for an optional VALUE, or why the value is not acceptable.
    pub fn event_weight(&self, value: Option<f64>) -> Result<f64, String> {
        match self.kind {
            ActionKind::Rating => match value {
                Some(v) if (1.0..=5.0).contains(&v) => Ok(self.weight * (v - 3.0)),
                Some(_) => {
                    Err("VALUE for rating out of range — expected a number from 1 to 5".into())
                }
                None => Err("rating needs VALUE — expected VALUE <1..5>".into()),
            },
            _ => match value {
                None => Ok(self.weight),
                Some(v) if v.is_finite() && (0.0..=1e6).contains(&v) => Ok(self.weight * v),
                Some(_) => Err("VALUE out of range — expected a number from 0 to 1000000".into()),
            },
        }
    }

    /// Whether this event marks the item as disliked.
    pub fn dislikes(&self, value: Option<f64>) -> bool {
        match self.kind {
            ActionKind::Dislike => true,
            ActionKind::Rating => value.is_some_and(|v| v < 3.0),
            _ => false,
        }
    }

    /// Past tense for reasons: "because you purchased A".
    pub fn past_tense(name: &[u8]) -> &[u8] {
        match name {
            b"view" => b"viewed",
            b"click" => b"clicked",
            b"add_to_cart" => b"added to cart",
            b"purchase" => b"purchased",
            b"rating" => b"rated",
            b"like" => b"liked",
            b"share" => b"shared",
            other => other,
        }
    }
}

/// The configured actions.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionTable {
    pub actions: Vec<Action>,
}

pub const DEFAULT_ACTION_WEIGHTS: &str =
    "view:1,click:2,add_to_cart:4,purchase:8,rating:2,dislike:-4";

/// Why an action table could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ActionTable {
    /// Parses `name:weight[,name:weight...]`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut actions: Vec<Action> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once(':')
                .ok_or_else(|| ParseError(format!("bad action '{part}' — expected name:weight")))?;
            let name = name.trim();
            if name.is_empty()
                || name.len() > 32
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ParseError(format!(
                    "bad action name '{name}' — expected 1-32 characters of A-Z a-z 0-9 _ -"
                )));
            }
            let weight: f64 = w
                .trim()
                .parse()
                .map_err(|_| ParseError(format!("bad weight for '{name}' — expected a number")))?;
            if !weight.is_finite() || weight.abs() > 1e6 {
                return Err(ParseError(format!(
                    "bad weight for '{name}' — expected a number from -1000000 to 1000000"
                )));
            }
            if actions.iter().any(|a| a.name == name) {
                return Err(ParseError(format!("action '{name}' given twice")));
            }
            let kind = match name {
                "purchase" => ActionKind::Purchase,
                "dislike" => ActionKind::Dislike,
                "rating" => ActionKind::Rating,
                _ => ActionKind::Plain,
            };
            actions.push(Action {
                name: name.to_string(),
                weight,
                kind,
            });
        }
        if actions.is_empty() || actions.len() > 64 {
            return Err(ParseError(
                "expected 1 to 64 actions as name:weight[,name:weight...]".into(),
            ));
        }
        Ok(ActionTable { actions })
    }

    pub fn find(&self, name: &[u8]) -> Option<&Action> {
        self.actions.iter().find(|a| a.name.as_bytes() == name)
    }

    /// Case-insensitive lookup, the way Redis treats keywords.
    pub fn find_ignore_case(&self, name: &[u8]) -> Option<&Action> {
        self.actions
            .iter()
            .find(|a| a.name.as_bytes().eq_ignore_ascii_case(name))
    }

    pub fn names(&self) -> String {
        self.actions
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn render(&self) -> String {
        self.actions
            .iter()
            .map(|a| format!("{}:{}", a.name, a.weight))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Default for ActionTable {
    fn default() -> Self {
        // The default string is a constant that parses; fall back to one action only if it didn't.
        ActionTable::parse(DEFAULT_ACTION_WEIGHTS).unwrap_or(ActionTable {
            actions: vec![Action {
                name: "view".into(),
                weight: 1.0,
                kind: ActionKind::Plain,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let t = ActionTable::parse(DEFAULT_ACTION_WEIGHTS).unwrap();
        assert_eq!(t.actions.len(), 6);
        assert_eq!(t.find(b"purchase").unwrap().kind, ActionKind::Purchase);
        assert_eq!(t.find(b"dislike").unwrap().weight, -4.0);
        assert_eq!(t, ActionTable::default());
        assert_eq!(ActionTable::parse(&t.render()).unwrap(), t);
    }

    #[test]
    fn bad_tables_are_rejected() {
        for bad in [
            "",
            "view",
            "view:x",
            "view:1,view:2",
            "v w:1",
            "view:NaN",
            "view:inf",
        ] {
            assert!(ActionTable::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weights() {
        let t = ActionTable::default();
        let rating = t.find(b"rating").unwrap();
        assert_eq!(rating.event_weight(Some(5.0)).unwrap(), 4.0);
        assert!(rating.event_weight(None).is_err());
        assert!(rating.event_weight(Some(6.0)).is_err());
        assert!(rating.dislikes(Some(1.0)));
        let view = t.find(b"view").unwrap();
        assert_eq!(view.event_weight(Some(2.0)).unwrap(), 2.0);
        assert!(view.event_weight(Some(f64::NAN)).is_err());
        assert!(view.event_weight(Some(-1.0)).is_err());
    }
}
