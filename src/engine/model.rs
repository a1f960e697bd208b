//! Named scoring models: the blend weights REC.GET ranks with.

use super::codec::{DResult, DecodeError, Reader, Writer};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub cooc: f64,
    pub affinity: f64,
    pub popularity: f64,
    /// Half-life, in seconds, of a history event's weight as a seed.
    pub recency_s: f64,
}

impl Model {
    pub const DEFAULT: Model = Model {
        cooc: 1.0,
        affinity: 0.5,
        popularity: 0.1,
        recency_s: 604_800.0,
    };
    pub const POPULAR: Model = Model {
        cooc: 0.0,
        affinity: 0.0,
        popularity: 1.0,
        recency_s: 604_800.0,
    };

    /// Whether the model can use a user's history at all.
    pub fn is_personal(&self) -> bool {
        self.cooc > 0.0 || self.affinity > 0.0
    }
}

pub const DEFAULT_MODEL: &str = "default";
pub const POPULAR_MODEL: &str = "popular";

/// Changes to a model; `None` keeps the current value.
#[derive(Debug, Default, Clone, Copy)]
pub struct ModelUpdate {
    pub cooc: Option<f64>,
    pub affinity: Option<f64>,
    pub popularity: Option<f64>,
    pub recency_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Models {
    map: BTreeMap<String, Model>,
    /// The engine stamp of each model's last change (built-ins start at 0).
    stamps: BTreeMap<String, u64>,
}

impl Default for Models {
    fn default() -> Self {
        let mut map = BTreeMap::new();
        map.insert(DEFAULT_MODEL.to_string(), Model::DEFAULT);
        map.insert(POPULAR_MODEL.to_string(), Model::POPULAR);
        Models {
            map,
            stamps: BTreeMap::new(),
        }
    }
}

/// Model names: 1-64 characters of A-Z a-z 0-9 _ . - (they appear inside rec ids).
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub fn is_builtin(name: &str) -> bool {
    name == DEFAULT_MODEL || name == POPULAR_MODEL
}

impl Models {
    pub fn get(&self, name: &str) -> Option<&Model> {
        self.map.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The stamp of the model's last change, if it exists.
    pub fn stamp(&self, name: &str) -> Option<u64> {
        self.map
            .contains_key(name)
            .then(|| self.stamps.get(name).copied().unwrap_or(0))
    }

    /// Applies an update; the caller validated the name, the values and the bound.
    pub fn set(&mut self, name: &str, up: ModelUpdate, stamp: u64) -> bool {
        let created = !self.map.contains_key(name);
        self.stamps.insert(name.to_string(), stamp);
        let m = self.map.entry(name.to_string()).or_insert(Model::DEFAULT);
        if let Some(v) = up.cooc {
            m.cooc = v;
        }
        if let Some(v) = up.affinity {
            m.affinity = v;
        }
        if let Some(v) = up.popularity {
            m.popularity = v;
        }
        if let Some(v) = up.recency_s {
            m.recency_s = v;
        }
        created
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.stamps.remove(name);
        self.map.remove(name).is_some()
    }

    pub fn mem_bytes(&self) -> usize {
        self.map.keys().map(|k| k.len() + 96).sum()
    }

    pub fn save(&self, w: &mut Writer) {
        w.len(self.map.len());
        for (k, m) in &self.map {
            w.bytes(k.as_bytes());
            w.f64(m.cooc);
            w.f64(m.affinity);
            w.f64(m.popularity);
            w.f64(m.recency_s);
            w.u64(self.stamps.get(k).copied().unwrap_or(0));
        }
    }

    pub fn load(r: &mut Reader) -> DResult<Self> {
        let n = r.len(44)?;
        let mut map = BTreeMap::new();
        let mut stamps = BTreeMap::new();
        for _ in 0..n {
            let name = r.string()?;
            if !valid_name(name.as_bytes()) {
                return Err(DecodeError("bad model name"));
            }
            let m = Model {
                cooc: r.f64()?,
                affinity: r.f64()?,
                popularity: r.f64()?,
                recency_s: r.f64()?,
            };
            let stamp = r.u64()?;
            if stamp != 0 {
                stamps.insert(name.clone(), stamp);
            }
            map.insert(name, m);
        }
        if !map.contains_key(DEFAULT_MODEL) || !map.contains_key(POPULAR_MODEL) {
            return Err(DecodeError("built-in models missing"));
        }
        Ok(Models { map, stamps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_updates() {
        let mut m = Models::default();
        assert_eq!(m.len(), 2);
        assert!(m.set(
            "fast",
            ModelUpdate {
                cooc: Some(2.0),
                ..Default::default()
            },
            7
        ));
        assert_eq!(m.get("fast").unwrap().affinity, Model::DEFAULT.affinity);
        assert_eq!(m.stamp("fast"), Some(7));
        assert_eq!(m.stamp("default"), Some(0));
        assert_eq!(m.stamp("nope"), None);
        assert!(!m.set("fast", ModelUpdate::default(), 8));
        assert!(!Model::POPULAR.is_personal());
        let mut w = Writer::new();
        m.save(&mut w);
        assert_eq!(Models::load(&mut Reader::new(&w.buf)).unwrap(), m);
    }

    #[test]
    fn names() {
        assert!(valid_name(b"a.b-c_1"));
        assert!(!valid_name(b""));
        assert!(!valid_name(b"a:b"));
        assert!(!valid_name(&[b'a'; 65]));
    }
}
