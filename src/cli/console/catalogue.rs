//! Every label the console shows, in each language it ships, from one catalogue
//! (`catalogue.toml`). Names, documents and free text are shown as the sender wrote them; only
//! the console's own words are translated.

use std::collections::BTreeMap;

/// A language of the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Bahasa Indonesia.
    Id,
}

impl Lang {
    /// Every language the console ships, in the order the chooser lists them.
    pub const ALL: [Self; 2] = [Self::En, Self::Id];

    /// The BCP 47 tag, as `<html lang>` and the chooser write it.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Id => "id",
        }
    }

    /// The language's own name for itself.
    pub fn name(self) -> &'static str {
        match self {
            Self::En => "English",
            Self::Id => "Bahasa Indonesia",
        }
    }

    /// The language a tag such as `id-ID` asks for, if the console has it.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        Self::ALL.into_iter().find(|l| l.tag() == primary)
    }
}

/// The labels of every language.
#[derive(Debug)]
pub struct Catalogue {
    languages: BTreeMap<String, BTreeMap<String, String>>,
}

/// Why the catalogue cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("the console's catalogue is not valid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("the console's catalogue has no labels for {0}")]
    Missing(&'static str),
    #[error("the console's catalogue lacks `{key}` in {lang}")]
    MissingKey { lang: &'static str, key: String },
    #[error("the console's catalogue has `{key}` in {lang} only")]
    ExtraKey { lang: &'static str, key: String },
}

impl Catalogue {
    /// The catalogue built into the program; every language must have every label English has.
    pub fn load() -> Result<Self, CatalogueError> {
        Self::parse(include_str!("catalogue.toml"))
    }

    fn parse(text: &str) -> Result<Self, CatalogueError> {
        let languages: BTreeMap<String, BTreeMap<String, String>> = toml::from_str(text)?;
        let english = languages.get("en").ok_or(CatalogueError::Missing("en"))?;
        for lang in Lang::ALL {
            let labels = languages
                .get(lang.tag())
                .ok_or(CatalogueError::Missing(lang.tag()))?;
            if let Some(key) = english.keys().find(|k| !labels.contains_key(*k)) {
                return Err(CatalogueError::MissingKey {
                    lang: lang.tag(),
                    key: key.clone(),
                });
            }
            if let Some(key) = labels.keys().find(|k| !english.contains_key(*k)) {
                return Err(CatalogueError::ExtraKey {
                    lang: lang.tag(),
                    key: key.clone(),
                });
            }
        }
        Ok(Self { languages })
    }

    /// The labels of one language.
    pub fn labels(&self, lang: Lang) -> Labels<'_> {
        Labels {
            lang,
            map: self.languages.get(lang.tag()),
        }
    }

    /// Whether English has a label for `key`.
    pub fn has(&self, key: &str) -> bool {
        self.languages
            .get("en")
            .is_some_and(|labels| labels.contains_key(key))
    }
}

/// One language's labels, as pages read them.
#[derive(Clone, Copy, Debug)]
pub struct Labels<'a> {
    /// The language.
    pub lang: Lang,
    map: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Labels<'a> {
    /// The label for `key`; a key the catalogue lacks shows as itself, bracketed, so that a
    /// missing label is seen rather than silently blank (a unit test keeps there being none).
    pub fn l(&self, key: &str) -> &'a str {
        match self.map.and_then(|m| m.get(key)) {
            Some(label) => label.as_str(),
            None => "[?]",
        }
    }

    /// The label of a proto enum value by its name (`ALERT_CATEGORY_OVERSTAY`); empty for an
    /// unspecified value.
    pub fn value(&self, name: &str) -> &'a str {
        if name.ends_with("_UNSPECIFIED") || name.is_empty() {
            return "";
        }
        self.l(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_label() {
        Catalogue::load().expect("the built-in catalogue is complete");
    }

    #[test]
    fn a_language_missing_a_label_or_having_an_extra_one_is_refused() {
        let missing = Catalogue::parse("[en]\na = \"A\"\nb = \"B\"\n[id]\na = \"A\"\n");
        assert!(
            matches!(missing, Err(CatalogueError::MissingKey { lang: "id", ref key }) if key == "b")
        );
        let extra = Catalogue::parse("[en]\na = \"A\"\n[id]\na = \"A\"\nc = \"C\"\n");
        assert!(matches!(
            extra,
            Err(CatalogueError::ExtraKey { lang: "id", .. })
        ));
    }

    /// Every label a template asks for is in the catalogue.
    #[test]
    fn every_label_the_templates_use_exists() {
        let catalogue = Catalogue::load().unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/console");
        let mut found = 0;
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split("t.l(\"").skip(1) {
                let key = piece.split('"').next().unwrap();
                found += 1;
                assert!(
                    catalogue.has(key),
                    "{} asks for `{key}`, which the catalogue lacks",
                    path.display()
                );
            }
        }
        assert!(found > 50, "the templates were read ({found} labels)");
    }

    /// Every value a form offers or a page names has a label.
    #[test]
    fn every_enum_value_shown_has_a_label() {
        let catalogue = Catalogue::load().unwrap();
        for name in super::super::forms::enum_names() {
            assert!(catalogue.has(name), "no label for {name}");
        }
    }
}
