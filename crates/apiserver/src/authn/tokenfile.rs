//! Static bearer tokens (kube-apiserver's `--token-auth-file`): a CSV file of `token,
//! user name, uid[, "group1,group2,…"]`, read once at start, as upstream's `tokenfile`
//! authenticator reads it — Go's `encoding/csv` (quoted fields, `""` for a quote), at
//! least three columns, an empty token skipped, a later duplicate winning.
//!
//! Must never accept a token that is not in the file, nor a file it cannot read whole:
//! a malformed file stops the server at start.

use std::collections::HashMap;
use std::path::Path;

use crate::request::User;

pub struct TokenFile {
    tokens: HashMap<String, User>,
}

impl std::fmt::Debug for TokenFile {
    /// The users, never the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile").field("users", &self.tokens.len()).finish()
    }
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        TokenFile::parse(&text, &path.display().to_string())
    }

    /// The file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<TokenFile, String> {
        let mut tokens = HashMap::new();
        for (number, record) in records(text)?.into_iter().enumerate() {
            if record.len() < 3 {
                return Err(format!(
                    "token file '{path}' must have at least 3 columns (token, user name, user uid), found {}",
                    record.len()
                ));
            }
            if record[0].is_empty() {
                tracing::warn!(
                    path,
                    record = number + 1,
                    "empty token has been found in token file"
                );
                continue;
            }
            let mut groups: Vec<String> = match record.get(3) {
                Some(groups) => groups.split(',').map(str::to_owned).collect(),
                None => Vec::new(),
            };
            // Every authenticated user is in system:authenticated (upstream's group adder).
            if !groups.iter().any(|g| g == "system:authenticated") {
                groups.push("system:authenticated".into());
            }
            let user = User {
                name: record[1].clone(),
                uid: record[2].clone(),
                groups,
                ..Default::default()
            };
            if tokens.insert(record[0].clone(), user).is_some() {
                tracing::warn!(
                    path,
                    record = number + 1,
                    "duplicate token has been found in token file"
                );
            }
        }
        Ok(TokenFile { tokens })
    }

    /// The user `token` names, if the file has it.
    pub fn authenticate(&self, token: &str) -> Option<User> {
        self.tokens.get(token).cloned()
    }
}

/// Go's `encoding/csv` with `FieldsPerRecord = -1`: records of comma-separated fields,
/// a field in double quotes may hold commas, newlines and `""` for a quote; blank lines
/// are skipped; a stray quote in an unquoted field, or an unclosed one, is an error.
fn records(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        // Blank lines are no records.
        if matches!(chars.peek(), Some('\n' | '\r')) {
            if chars.next() == Some('\n') {
                line += 1;
            }
            continue;
        }
        let mut record = Vec::new();
        loop {
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            line += usize::from(c == '\n');
                            field.push(c);
                        }
                        None => {
                            return Err(format!(
                                "record on line {line}: extraneous or missing \" in quoted-field"
                            ));
                        }
                    }
                }
                if !matches!(chars.peek(), None | Some(',' | '\n' | '\r')) {
                    return Err(format!(
                        "record on line {line}: extraneous or missing \" in quoted-field"
                    ));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if matches!(c, ',' | '\n' | '\r') {
                        break;
                    }
                    if c == '"' {
                        return Err(format!("record on line {line}: bare \" in non-quoted-field"));
                    }
                    field.push(c);
                    chars.next();
                }
            }
            record.push(field);
            match chars.next() {
                Some(',') => continue,
                Some('\r') => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    break;
                }
                Some('\n') => {
                    line += 1;
                    break;
                }
                _ => break,
            }
        }
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_test_file_reads_as_upstream_reads_it() {
        let file = TokenFile::parse(
            "admin-token,admin,admin,system:masters\n\
             \n\
             token2,bob,2,\"dev,ops\"\r\n\
             ,nobody,3\n\
             token3,carol,3\n\
             token2,bobby,22\n",
            "tokens.csv",
        )
        .expect("parses");
        let admin = file.authenticate("admin-token").expect("admin");
        assert_eq!((admin.name.as_str(), admin.uid.as_str()), ("admin", "admin"));
        assert_eq!(admin.groups, ["system:masters", "system:authenticated"]);
        // A later duplicate wins, as in upstream's map.
        let bob = file.authenticate("token2").expect("bob");
        assert_eq!(bob.name, "bobby");
        assert_eq!(file.authenticate("token3").expect("carol").groups, ["system:authenticated"]);
        assert!(file.authenticate("").is_none());
        assert!(file.authenticate("admin").is_none());
        let quoted = TokenFile::parse("t,\"a \"\"b\"\"\",1,\"x,y\"\n", "f").expect("parses");
        let user = quoted.authenticate("t").expect("user");
        assert_eq!(user.name, "a \"b\"");
        assert_eq!(user.groups, ["x", "y", "system:authenticated"]);
    }

    #[test]
    fn malformed_files_are_refused() {
        let short = TokenFile::parse("token,user\n", "tokens.csv").expect_err("two columns");
        assert_eq!(
            short,
            "token file 'tokens.csv' must have at least 3 columns (token, user name, user uid), found 2"
        );
        assert!(TokenFile::parse("t,\"open,1\n", "f").is_err());
        assert!(TokenFile::parse("t,a\"b,1\n", "f").is_err());
        assert!(
            format!("{:?}", TokenFile::parse("secret,u,1\n", "f").expect("ok"))
                .find("secret")
                .is_none()
        );
    }
}
