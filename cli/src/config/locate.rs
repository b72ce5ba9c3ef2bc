//! Maps between dotted key paths (`network.public_subnets[1]`) and places in a
//! TOML source, so every config error can name the file, key and line.

use toml_edit::{Document, Item, Table, Value};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted key path such as `eks.node_groups[0].min`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Segment::Key(key.to_owned()));
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Segment::Index(index));
        self
    }

    /// Parses `a.b[2].c`; keys in our schema never contain dots or brackets.
    pub fn parse(dotted: &str) -> Self {
        let mut path = KeyPath::default();
        for part in dotted.split('.').filter(|p| !p.is_empty()) {
            let (name, rest) = part.split_once('[').unwrap_or((part, ""));
            path = path.key(name);
            for index in rest.split('[') {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    path = path.index(i);
                }
            }
        }
        path
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub fn of_offset(source: &str, offset: usize) -> Self {
        let before = &source[..offset.min(source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Position { line, column }
    }
}

/// A parsed document that answers "where is this key?" and "which key is here?".
pub struct SourceMap<'a> {
    source: &'a str,
    doc: Option<Document<&'a str>>,
}

impl<'a> SourceMap<'a> {
    pub fn new(source: &'a str) -> Self {
        SourceMap {
            source,
            doc: Document::parse(source).ok(),
        }
    }

    /// Position of the deepest existing part of `path` (the value if present,
    /// else its nearest existing parent table's header).
    pub fn position_of(&self, path: &KeyPath) -> Option<Position> {
        let doc = self.doc.as_ref()?;
        let mut item: &Item = doc.as_item();
        let mut best = None;
        for segment in &path.0 {
            let next = match segment {
                Segment::Key(k) => {
                    if let Some(key_span) = item_key_span(item, k) {
                        best = Some(key_span);
                    }
                    item.get(k.as_str())
                }
                Segment::Index(i) => item.get(*i),
            };
            match next {
                Some(next) => {
                    if let Some(span) = next.span() {
                        // Keys point at the key; array elements at the element.
                        if matches!(segment, Segment::Index(_)) || best.is_none() {
                            best = Some(span.start);
                        }
                    }
                    item = next;
                }
                None => break,
            }
        }
        best.map(|offset| Position::of_offset(self.source, offset))
    }

    /// The key path of the deepest item whose span contains `offset`.
    pub fn path_at(&self, offset: usize) -> KeyPath {
        match self.doc.as_ref() {
            Some(doc) => in_table(KeyPath::default(), doc.as_table(), offset),
            None => KeyPath::default(),
        }
    }
}

fn in_table(path: KeyPath, table: &Table, offset: usize) -> KeyPath {
    for (key, child) in table.iter() {
        let key_span = table.key(key).and_then(|k| k.span());
        if contains(key_span, offset) || item_contains(child, offset) {
            return in_item(path.key(key), child, offset);
        }
    }
    path
}

fn in_item(path: KeyPath, item: &Item, offset: usize) -> KeyPath {
    match item {
        Item::Table(table) => in_table(path, table, offset),
        Item::ArrayOfTables(array) => {
            for (i, table) in array.iter().enumerate() {
                if contains(table.span(), offset) || table_contains(table, offset) {
                    return in_table(path.index(i), table, offset);
                }
            }
            path
        }
        Item::Value(value) => in_value(path, value, offset),
        Item::None => path,
    }
}

fn in_value(path: KeyPath, value: &Value, offset: usize) -> KeyPath {
    match value {
        Value::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                if contains(element.span(), offset) {
                    return in_value(path.index(i), element, offset);
                }
            }
            path
        }
        Value::InlineTable(table) => {
            for (key, element) in table.iter() {
                let key_span = table.key(key).and_then(|k| k.span());
                if contains(key_span, offset) || contains(element.span(), offset) {
                    return in_value(path.key(key), element, offset);
                }
            }
            path
        }
        _ => path,
    }
}

fn item_key_span(item: &Item, key: &str) -> Option<usize> {
    match item {
        Item::Table(t) => t.key(key)?.span().map(|s| s.start),
        Item::Value(Value::InlineTable(t)) => t.key(key)?.span().map(|s| s.start),
        _ => None,
    }
}

fn contains(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

/// Whether an item spans `offset`. A table's own span covers only its header
/// (and implicit tables have none), so look at what is inside it.
fn item_contains(item: &Item, offset: usize) -> bool {
    contains(item.span(), offset)
        || match item {
            Item::Table(table) => table_contains(table, offset),
            Item::ArrayOfTables(array) => array.iter().any(|t| table_contains(t, offset)),
            _ => false,
        }
}

fn table_contains(table: &Table, offset: usize) -> bool {
    table.iter().any(|(key, child)| {
        contains(table.key(key).and_then(|k| k.span()), offset) || item_contains(child, offset)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "tier = \"staging\"\n\n[network]\nvpc_cidr = \"10.0.0.0/16\"\npublic_subnets = [\"a\", \"b\"]\n\n[[eks.node_groups]]\nname = \"x\"\nmin = 3\n";

    #[test]
    fn finds_lines_of_keys_and_elements() {
        let map = SourceMap::new(SRC);
        assert_eq!(map.position_of(&KeyPath::parse("tier")).unwrap().line, 1);
        assert_eq!(
            map.position_of(&KeyPath::parse("network.vpc_cidr"))
                .unwrap()
                .line,
            4
        );
        let element = map
            .position_of(&KeyPath::parse("network.public_subnets[1]"))
            .unwrap();
        assert_eq!((element.line, element.column), (5, 24));
        assert_eq!(
            map.position_of(&KeyPath::parse("eks.node_groups[0].min"))
                .unwrap()
                .line,
            9
        );
        // A missing key points at its parent table.
        assert_eq!(
            map.position_of(&KeyPath::parse("network.nope"))
                .unwrap()
                .line,
            3
        );
    }

    #[test]
    fn names_the_key_at_an_offset() {
        let map = SourceMap::new(SRC);
        let offset = SRC.find("\"b\"").unwrap();
        assert_eq!(map.path_at(offset).to_string(), "network.public_subnets[1]");
        let offset = SRC.find("min").unwrap();
        assert_eq!(map.path_at(offset).to_string(), "eks.node_groups[0].min");
    }

    #[test]
    fn key_paths_round_trip() {
        for p in ["a", "a.b", "a.b[3].c", "x[0][1]"] {
            assert_eq!(KeyPath::parse(p).to_string(), p);
        }
    }
}
