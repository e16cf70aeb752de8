//! User categories: a text file maps function or module patterns to names.
//!
//! ```text
//! # comments and blank lines are ignored
//! Cache  = function:lru_* | module:libcache.so
//! Parser = function:parse_* | function:*::Parser::*
//! Buffer = function:buf_grow
//! ```
//!
//! Each line is `NAME = MATCHER | MATCHER …`; a matcher is `function:GLOB`
//! (any frame of the site's stack whose function matches) or `module:GLOB`
//! (any frame whose module's path or file name matches). Globs use `*` (any
//! run of characters) and `?` (one character). A site belongs to the first
//! category, in file order, that has a matching matcher; the others are
//! summed as `(uncategorized)`.

use serde::{Deserialize, Serialize};

use super::attribution::base_name;
use crate::report::Frame;

/// Name of the group of sites no rule matched.
pub const UNCATEGORIZED: &str = "(uncategorized)";

/// What a matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// A frame's function name.
    Function,
    /// A frame's module path or file name.
    Module,
}

/// One `field:glob` matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// What it looks at.
    pub field: Field,
    /// The glob.
    pub pattern: String,
}

/// One category: a name and its matchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Name shown in reports.
    pub name: String,
    /// Any of them makes a site belong here.
    pub matchers: Vec<Matcher>,
}

/// The categories of a file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Categories {
    /// In file order: the first match wins.
    pub categories: Vec<Category>,
}

/// Whether `text` matches the glob `pattern` (`*` and `?`).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl Categories {
    /// Parses the text of a categories file; the error names the line.
    pub fn parse(text: &str) -> Result<Categories, String> {
        let mut categories = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |what: &str| format!("line {}: {what}: {line:?}", i + 1);
            let (name, rest) = line
                .split_once('=')
                .ok_or_else(|| err("expected `NAME = function:GLOB | module:GLOB`"))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(err("empty category name"));
            }
            let mut matchers = Vec::new();
            for part in rest.split('|') {
                let (field, pattern) = part
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| err("a matcher is `function:GLOB` or `module:GLOB`"))?;
                let field = match field.trim() {
                    "function" => Field::Function,
                    "module" => Field::Module,
                    other => return Err(err(&format!("unknown matcher `{other}`"))),
                };
                let pattern = pattern.trim();
                if pattern.is_empty() {
                    return Err(err("empty pattern"));
                }
                matchers.push(Matcher {
                    field,
                    pattern: pattern.to_owned(),
                });
            }
            categories.push(Category {
                name: name.to_owned(),
                matchers,
            });
        }
        Ok(Categories { categories })
    }

    /// Reads and parses a categories file.
    pub fn load(path: &std::path::Path) -> Result<Categories, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the categories file {}: {e}", path.display()))?;
        Categories::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The category of a site with these frames, if any matches.
    pub fn classify(&self, frames: &[Frame]) -> Option<&str> {
        self.categories
            .iter()
            .find(|c| {
                c.matchers.iter().any(|m| {
                    frames.iter().any(|f| match m.field {
                        Field::Function => glob(&m.pattern, &f.function),
                        Field::Module => f.module.as_deref().is_some_and(|path| {
                            glob(&m.pattern, path) || glob(&m.pattern, base_name(path))
                        }),
                    })
                })
            })
            .map(|c| c.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, module: &str) -> Frame {
        Frame::for_test(function, module)
    }

    #[test]
    fn globs() {
        assert!(glob("lru_*", "lru_insert"));
        assert!(glob("*cache*", "my_cache_get"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("lru_*", "xlru_insert"));
        assert!(glob("*", ""));
        assert!(!glob("a", ""));
    }

    #[test]
    fn first_matching_category_wins() {
        let c = Categories::parse(
            "# comment\n\nCache = function:lru_* | module:libcache.so\nParser = function:parse_*\n",
        )
        .unwrap();
        assert_eq!(c.categories.len(), 2);
        let site = [frame("parse_line", "/app"), frame("lru_get", "/app")];
        assert_eq!(c.classify(&site), Some("Cache"));
        assert_eq!(c.classify(&site[..1]), Some("Parser"));
        let lib = [frame("get", "/usr/lib/libcache.so")];
        assert_eq!(c.classify(&lib), Some("Cache"));
        assert_eq!(c.classify(&[frame("main", "/app")]), None);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        assert!(Categories::parse("Cache lru")
            .unwrap_err()
            .starts_with("line 1:"));
        assert!(Categories::parse("\nX = symbol:foo")
            .unwrap_err()
            .contains("line 2: unknown matcher"));
        assert!(Categories::parse("X = function:").is_err());
        assert!(Categories::parse(" = function:a").is_err());
    }
}
