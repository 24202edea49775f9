//! `README.ko.md` kept in step with `README.md`.
//!
//! The Korean README is a translation, so its prose cannot be compared with the English one.
//! What can be compared is its shape: the same headings at the same levels in the same order,
//! and the same fenced code blocks, byte for byte, in the same order and under the same
//! headings. [`compare`] finds every way the two differ and names the heading and the code
//! block. Links to a heading (`](#anchor)`) must lead to one in the same file, since the
//! Korean headings have anchors of their own. [`sync_code_blocks`] copies `README.md`'s code
//! blocks into `README.ko.md` when only their contents changed, which leaves just the prose
//! to translate.
//!
//! The parsing is the small subset of CommonMark the READMEs use: ATX headings (`## Title`)
//! and fenced code blocks (```` ``` ```` or `~~~`, indented or not). A `#` line inside a fenced
//! block is code, not a heading.

use std::fmt::Write as _;
use std::path::Path;

use similar::{Algorithm, DiffOp, TextDiff};

use crate::merge::MergeError;

/// The README every other one follows.
pub const ENGLISH: &str = "README.md";
/// Its Korean translation.
pub const KOREAN: &str = "README.ko.md";

/// An ATX heading: its level (the number of `#`), its text and its line (1-based).
#[derive(Debug)]
struct Heading<'a> {
    level: usize,
    text: &'a str,
    line: usize,
}

/// A fenced code block, from its opening fence line to its closing one.
#[derive(Debug)]
struct Block<'a> {
    /// The block's bytes in the file, both fence lines included, without the last newline.
    text: &'a str,
    /// Where `text` starts in the file.
    start: usize,
    /// The line of the opening fence (1-based).
    line: usize,
    /// The heading the block is under: an index into `Outline::headings`.
    section: Option<usize>,
}

/// The headings and code blocks of one markdown file, in order.
#[derive(Debug)]
struct Outline<'a> {
    headings: Vec<Heading<'a>>,
    blocks: Vec<Block<'a>>,
}

impl<'a> Outline<'a> {
    fn of(markdown: &'a str) -> Self {
        let mut headings = Vec::new();
        let mut blocks = Vec::new();
        // The open fence: its character, its length, where it starts, and its line.
        let mut open: Option<(char, usize, usize, usize)> = None;
        let mut offset = 0;
        for (index, raw) in markdown.split_inclusive('\n').enumerate() {
            let line_start = offset;
            offset += raw.len();
            let line = raw.trim_end_matches(['\n', '\r']);
            let trimmed = line.trim_start_matches(' ');
            match open {
                Some((fence, length, start, first_line)) => {
                    let closes = trimmed.trim_end().len() >= length
                        && trimmed.trim_end().chars().all(|c| c == fence);
                    if closes {
                        blocks.push(Block {
                            text: &markdown[start..line_start + line.len()],
                            start,
                            line: first_line,
                            section: headings.len().checked_sub(1),
                        });
                        open = None;
                    }
                }
                None => {
                    if let Some((fence, length)) = opening_fence(trimmed) {
                        open = Some((fence, length, line_start, index + 1));
                    } else if let Some((level, text)) = heading(line) {
                        headings.push(Heading {
                            level,
                            text,
                            line: index + 1,
                        });
                    }
                }
            }
        }
        if let Some((_, _, start, first_line)) = open {
            // An unclosed fence runs to the end of the document, as in CommonMark.
            blocks.push(Block {
                text: markdown[start..].trim_end_matches(['\n', '\r']),
                start,
                line: first_line,
                section: headings.len().checked_sub(1),
            });
        }
        Outline { headings, blocks }
    }

    /// `` `## Title` (line 12)`` for the heading a block is under, or `the top` before any.
    fn section_name(&self, section: Option<usize>) -> String {
        match section.map(|index| &self.headings[index]) {
            Some(heading) => format!(
                "`{} {}` (line {})",
                "#".repeat(heading.level),
                heading.text,
                heading.line
            ),
            None => "the top of the file".to_owned(),
        }
    }

    fn block_name(&self, index: usize) -> String {
        let block = &self.blocks[index];
        format!(
            "code block {} of {} (line {}, under {})",
            index + 1,
            self.blocks.len(),
            block.line,
            self.section_name(block.section)
        )
    }
}

/// A line that opens a fenced code block: three or more backticks or tildes.
fn opening_fence(trimmed: &str) -> Option<(char, usize)> {
    let fence = trimmed.chars().next().filter(|c| matches!(c, '`' | '~'))?;
    let length = trimmed.chars().take_while(|&c| c == fence).count();
    (length >= 3).then_some((fence, length))
}

/// An ATX heading: up to three spaces, one to six `#`, then a space or the end of the line.
fn heading(line: &str) -> Option<(usize, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let level = rest.chars().take_while(|&c| c == '#').count();
    let after = &rest[level..];
    if !(1..=6).contains(&level) || !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let text = after.trim();
    // An optional closing sequence of `#`s, after a space.
    let text = match text.trim_end_matches('#') {
        stripped if stripped.ends_with([' ', '\t']) || stripped.is_empty() => stripped.trim_end(),
        _ => text,
    };
    Some((level, text))
}

/// Every way `korean` does not follow `english`, each a message that names the heading or the
/// code block (file, line and the heading it is under). Empty when they match.
pub fn compare(english: &str, korean: &str) -> Vec<String> {
    let en = Outline::of(english);
    let ko = Outline::of(korean);
    let mut problems = Vec::new();
    if let Some(problem) = compare_headings(&en, &ko) {
        problems.push(problem);
    }
    problems.extend(compare_blocks(&en, &ko));
    problems.extend(broken_anchors(ENGLISH, english, &en));
    problems.extend(broken_anchors(KOREAN, korean, &ko));
    problems
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as `-`.
/// Letters of any script stay, so `## 커맨드 라인` is `#커맨드-라인`.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter(|&c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Links within the file (`](#anchor)`) whose anchor no heading of the file has: a heading
/// renamed, or translated without its links.
fn broken_anchors(name: &str, markdown: &str, outline: &Outline<'_>) -> Vec<String> {
    let anchors: Vec<String> = outline.headings.iter().map(|h| anchor(h.text)).collect();
    let in_blocks = |offset: usize| {
        outline
            .blocks
            .iter()
            .any(|b| (b.start..b.start + b.text.len()).contains(&offset))
    };
    let mut problems = Vec::new();
    for (offset, _) in markdown.match_indices("](#") {
        let target = &markdown[offset + 3..];
        let Some(end) = target.find(')') else {
            continue;
        };
        let target = &target[..end];
        if in_blocks(offset) || anchors.iter().any(|a| a == target) {
            continue;
        }
        let line = markdown[..offset].matches('\n').count() + 1;
        problems.push(format!(
            "{name} line {line} links to `#{target}`, but no heading of {name} has that anchor"
        ));
    }
    problems
}

/// The headings' levels, in order. On a difference, both outlines side by side.
fn compare_headings(en: &Outline<'_>, ko: &Outline<'_>) -> Option<String> {
    let first_difference = (0..en.headings.len().max(ko.headings.len())).find(|&index| {
        en.headings.get(index).map(|h| h.level) != ko.headings.get(index).map(|h| h.level)
    })?;
    let mut message = format!(
        "the headings differ from heading {} on ({ENGLISH} has {}, {KOREAN} has {}); \
         side by side, `>` marks the first difference:",
        first_difference + 1,
        en.headings.len(),
        ko.headings.len(),
    );
    let show = |heading: Option<&Heading<'_>>| match heading {
        Some(h) => format!("{:>4}: {} {}", h.line, "#".repeat(h.level), h.text),
        None => "   -: (none)".to_owned(),
    };
    for index in 0..en.headings.len().max(ko.headings.len()) {
        let mark = if index == first_difference { '>' } else { ' ' };
        let left = show(en.headings.get(index));
        let right = show(ko.headings.get(index));
        let pad = 56_usize.saturating_sub(left.chars().count());
        write!(message, "\n  {mark} {left}{:pad$}  | {right}", "").expect("a String");
    }
    Some(message)
}

/// The code blocks, aligned by content so that one added or removed block is reported alone.
fn compare_blocks(en: &Outline<'_>, ko: &Outline<'_>) -> Vec<String> {
    let en_texts: Vec<&str> = en.blocks.iter().map(|b| b.text).collect();
    let ko_texts: Vec<&str> = ko.blocks.iter().map(|b| b.text).collect();
    let mut problems = Vec::new();
    let mut misplaced_reported = false;
    for op in similar::capture_diff_slices(Algorithm::Myers, &en_texts, &ko_texts) {
        match op {
            DiffOp::Equal {
                old_index,
                new_index,
                len,
            } => {
                // The same block under a heading at another position: a section is missing,
                // extra or moved before it. Said once; the rest would follow from it.
                let moved = (0..len)
                    .find(|i| en.blocks[old_index + i].section != ko.blocks[new_index + i].section);
                if let (Some(i), false) = (moved, misplaced_reported) {
                    misplaced_reported = true;
                    problems.push(format!(
                        "{ENGLISH} {} is {KOREAN} {}: the headings before it do not \
                         correspond (a section is missing, extra or moved)",
                        en.block_name(old_index + i),
                        ko.block_name(new_index + i),
                    ));
                }
            }
            DiffOp::Delete {
                old_index, old_len, ..
            } => {
                for index in old_index..old_index + old_len {
                    problems.push(only_in(ENGLISH, en, index, KOREAN));
                }
            }
            DiffOp::Insert {
                new_index, new_len, ..
            } => {
                for index in new_index..new_index + new_len {
                    problems.push(only_in(KOREAN, ko, index, ENGLISH));
                }
            }
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                let paired = old_len.min(new_len);
                for i in 0..paired {
                    problems.push(changed(en, old_index + i, ko, new_index + i));
                }
                for index in old_index + paired..old_index + old_len {
                    problems.push(only_in(ENGLISH, en, index, KOREAN));
                }
                for index in new_index + paired..new_index + new_len {
                    problems.push(only_in(KOREAN, ko, index, ENGLISH));
                }
            }
        }
    }
    problems
}

fn only_in(file: &str, outline: &Outline<'_>, index: usize, other: &str) -> String {
    format!(
        "{file} {} has no copy in {other}:\n{}",
        outline.block_name(index),
        indent(outline.blocks[index].text)
    )
}

/// A block that differs: where it is in each file, and a diff that turns the Korean copy into
/// the English one.
fn changed(en: &Outline<'_>, en_index: usize, ko: &Outline<'_>, ko_index: usize) -> String {
    let (old, new) = (
        format!("{}\n", ko.blocks[ko_index].text),
        format!("{}\n", en.blocks[en_index].text),
    );
    let diff = TextDiff::from_lines(&old, &new);
    let diff = diff
        .unified_diff()
        .context_radius(2)
        .header(KOREAN, ENGLISH)
        .to_string();
    format!(
        "{ENGLISH} {} differs from {KOREAN} {}; to make the Korean copy the same \
         (or run `cargo xtask readme-sync`):\n{}",
        en.block_name(en_index),
        ko.block_name(ko_index),
        indent(&diff)
    )
}

fn indent(text: &str) -> String {
    let mut indented = String::new();
    for line in text.lines() {
        writeln!(indented, "    {line}").expect("a String");
    }
    indented.trim_end().to_owned()
}

/// `korean` with each code block replaced by `english`'s block at the same position, when the
/// two have the same headings and the same number of code blocks under each. Otherwise the
/// blocks cannot be paired without a person: the problems to fix by hand first.
pub fn sync_code_blocks(english: &str, korean: &str) -> Result<String, Vec<String>> {
    let en = Outline::of(english);
    let ko = Outline::of(korean);
    let mut problems = Vec::new();
    problems.extend(compare_headings(&en, &ko));
    let sections = |outline: &Outline<'_>| -> Vec<Option<usize>> {
        outline.blocks.iter().map(|b| b.section).collect()
    };
    if problems.is_empty() && sections(&en) != sections(&ko) {
        // Same headings, so the blocks are counted per heading: say where the counts differ.
        for index in 0..en.headings.len() {
            let count = |outline: &Outline<'_>| {
                outline
                    .blocks
                    .iter()
                    .filter(|b| b.section == Some(index))
                    .count()
            };
            if count(&en) != count(&ko) {
                problems.push(format!(
                    "under heading {} ({ENGLISH} {}, {KOREAN} {}), {ENGLISH} has {} and {KOREAN} \
                     has {} code blocks: add or remove the block in {KOREAN} by hand, \
                     with its prose, then run this again",
                    index + 1,
                    en.section_name(Some(index)),
                    ko.section_name(Some(index)),
                    count(&en),
                    count(&ko),
                ));
            }
        }
        if problems.is_empty() {
            problems.push(format!(
                "{ENGLISH} and {KOREAN} have a different number of code blocks before the \
                 first heading"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut synced = String::with_capacity(korean.len());
    let mut copied_to = 0;
    for (en_block, ko_block) in en.blocks.iter().zip(&ko.blocks) {
        synced.push_str(&korean[copied_to..ko_block.start]);
        synced.push_str(en_block.text);
        copied_to = ko_block.start + ko_block.text.len();
    }
    synced.push_str(&korean[copied_to..]);
    Ok(synced)
}

fn read(root: &Path, name: &str) -> Result<String, MergeError> {
    let path = root.join(name);
    std::fs::read_to_string(&path).map_err(|source| MergeError::Io {
        action: "read",
        path,
        source,
    })
}

/// `cargo xtask check`'s README part: prints each problem; true when there are none.
pub fn check(root: &Path) -> Result<bool, MergeError> {
    let problems = compare(&read(root, ENGLISH)?, &read(root, KOREAN)?);
    if problems.is_empty() {
        println!("{KOREAN} has the headings and code blocks of {ENGLISH}");
        return Ok(true);
    }
    for problem in &problems {
        eprintln!("error: {problem}\n");
    }
    eprintln!(
        "error: {KOREAN} no longer follows {ENGLISH} ({} problems above); \
         `cargo xtask readme-sync` copies changed code blocks, the rest is by hand",
        problems.len()
    );
    Ok(false)
}

/// `cargo xtask readme-sync`: rewrites `README.ko.md`'s code blocks from `README.md`'s and
/// says which ones changed. True when the two then match.
pub fn sync(root: &Path) -> Result<bool, MergeError> {
    let english = read(root, ENGLISH)?;
    let korean = read(root, KOREAN)?;
    let synced = match sync_code_blocks(&english, &korean) {
        Ok(synced) => synced,
        Err(problems) => {
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            eprintln!("error: {KOREAN} left as it was");
            return Ok(false);
        }
    };
    let before = Outline::of(&korean);
    let after = Outline::of(&synced);
    let mut changed = 0;
    for (index, (old, new)) in before.blocks.iter().zip(&after.blocks).enumerate() {
        if old.text != new.text {
            changed += 1;
            println!("copied {}", after.block_name(index));
        }
    }
    if changed > 0 {
        let path = root.join(KOREAN);
        std::fs::write(&path, &synced).map_err(|source| MergeError::Io {
            action: "write",
            path,
            source,
        })?;
    }
    println!(
        "{changed} code blocks copied into {KOREAN}; now translate any prose that changed in {ENGLISH}"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGLISH_DOC: &str = "\
# Title

Intro.

## Sending

```rust
let a = 1;
# let hidden = 2;
```

### Configuration

```sh
cargo run
```

## Layout

Text.
";

    const KOREAN_DOC: &str = "\
# 제목

소개.

## 전송

```rust
let a = 1;
# let hidden = 2;
```

### 설정

```sh
cargo run
```

## 디렉터리 구조

본문.
";

    fn problems(korean: &str) -> String {
        compare(ENGLISH_DOC, korean).join("\n\n")
    }

    #[test]
    fn a_translation_with_the_same_shape_passes() {
        assert_eq!(compare(ENGLISH_DOC, KOREAN_DOC), Vec::<String>::new());
    }

    #[test]
    fn hash_lines_inside_code_blocks_are_not_headings() {
        let outline = Outline::of(ENGLISH_DOC);
        let levels: Vec<usize> = outline.headings.iter().map(|h| h.level).collect();
        assert_eq!(levels, [1, 2, 3, 2]);
        assert_eq!(outline.blocks.len(), 2);
        assert_eq!(outline.blocks[0].section, Some(1));
        assert_eq!(outline.blocks[1].section, Some(2));
    }

    #[test]
    fn indented_and_tilde_fences_and_closing_hashes() {
        let outline = Outline::of(
            "## A ##\n1. item\n\n   ```text\n   # not a heading\n   ```\n~~~~\n```\n# no\n~~~~\n#no\n####### seven\n",
        );
        let headings: Vec<(usize, &str)> =
            outline.headings.iter().map(|h| (h.level, h.text)).collect();
        assert_eq!(headings, [(2, "A")]);
        let blocks: Vec<&str> = outline.blocks.iter().map(|b| b.text).collect();
        assert_eq!(
            blocks,
            [
                "   ```text\n   # not a heading\n   ```",
                "~~~~\n```\n# no\n~~~~"
            ]
        );
    }

    #[test]
    fn a_missing_section_is_named() {
        let korean = KOREAN_DOC.replace("### 설정\n\n```sh\ncargo run\n```\n\n", "");
        let found = problems(&korean);
        assert!(
            found.contains(
                "the headings differ from heading 3 on (README.md has 4, README.ko.md has 3)"
            ),
            "{found}"
        );
        assert!(found.contains(">   12: ### Configuration"), "{found}");
        assert!(
            found.contains("README.md code block 2 of 2 (line 14, under `### Configuration` (line 12)) has no copy in README.ko.md"),
            "{found}"
        );
    }

    #[test]
    fn a_reordered_section_is_named() {
        // `## 전송` and its block moved after `### 설정`: same levels, other order.
        let korean = "# 제목\n\n### 설정\n\n```sh\ncargo run\n```\n\n## 전송\n\n```rust\nlet a = 1;\n# let hidden = 2;\n```\n\n## 디렉터리 구조\n";
        let found = problems(korean);
        assert!(
            found.contains("the headings differ from heading 2 on"),
            "{found}"
        );
        assert!(
            found.contains("README.md code block 1 of 2 (line 7, under `## Sending` (line 5)) has no copy in README.ko.md")
                || found.contains("README.md code block 2 of 2 (line 14, under `### Configuration` (line 12)) has no copy"),
            "{found}"
        );
    }

    #[test]
    fn a_section_moved_under_another_heading_of_the_same_level_is_named() {
        // Same heading levels, but the Korean file put the sh block under `## 전송`.
        let korean = KOREAN_DOC.replace(
            "### 설정\n\n```sh\ncargo run\n```\n",
            "```sh\ncargo run\n```\n\n### 설정\n",
        );
        let found = problems(&korean);
        assert!(
            found.contains("README.md code block 2 of 2 (line 14, under `### Configuration` (line 12)) is README.ko.md code block 2 of 2 (line 12, under `## 전송` (line 5))"),
            "{found}"
        );
    }

    #[test]
    fn a_changed_code_block_is_named_with_a_diff() {
        let korean = KOREAN_DOC.replace("let a = 1;", "let a = 2;");
        let found = compare(ENGLISH_DOC, &korean);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("README.md code block 1 of 2 (line 7, under `## Sending` (line 5)) differs from README.ko.md code block 1 of 2 (line 7, under `## 전송` (line 5))"),
            "{}",
            found[0]
        );
        assert!(
            found[0].contains("    -let a = 2;\n    +let a = 1;"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn an_extra_code_block_in_the_korean_file_is_named() {
        let korean = KOREAN_DOC.replace("본문.\n", "본문.\n\n```text\nextra\n```\n");
        assert_eq!(
            compare(ENGLISH_DOC, &korean),
            [
                "README.ko.md code block 3 of 3 (line 22, under `## 디렉터리 구조` (line 18)) has no copy in README.md:\n    ```text\n    extra\n    ```"
            ]
        );
    }

    #[test]
    fn sync_copies_changed_blocks_and_keeps_the_prose() {
        let english = ENGLISH_DOC.replace("cargo run", "cargo run --release");
        let synced = sync_code_blocks(&english, KOREAN_DOC).expect("same shape");
        assert_eq!(
            synced,
            KOREAN_DOC.replace("cargo run", "cargo run --release")
        );
        assert_eq!(compare(&english, &synced), Vec::<String>::new());
    }

    #[test]
    fn sync_refuses_when_a_block_was_added() {
        let english = ENGLISH_DOC.replace("Text.\n", "Text.\n\n```text\nnew\n```\n");
        let problems =
            sync_code_blocks(&english, KOREAN_DOC).expect_err("a block to place by hand");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("under heading 4 (README.md `## Layout` (line 18), README.ko.md `## 디렉터리 구조` (line 18)), README.md has 1 and README.ko.md has 0 code blocks"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn links_to_headings_are_checked_in_each_file() {
        assert_eq!(
            anchor("The commerce model and the reserved check"),
            "the-commerce-model-and-the-reserved-check"
        );
        assert_eq!(
            anchor("Where failures go: nothing is lost silently"),
            "where-failures-go-nothing-is-lost-silently"
        );
        assert_eq!(anchor("Marketap 스펙이 바뀌면"), "marketap-스펙이-바뀌면");
        let english = ENGLISH_DOC.replace("Intro.", "See [it](#configuration).");
        let korean = KOREAN_DOC.replace("소개.", "[설정](#설정), [배치](#layout) 참고.");
        assert_eq!(
            compare(&english, &korean),
            [
                "README.ko.md line 3 links to `#layout`, but no heading of README.ko.md has that anchor"
            ]
        );
    }

    /// The real files: `cargo test -p xtask` fails when they drift, as `cargo xtask check` does.
    #[test]
    fn the_korean_readme_follows_the_english_one() {
        let root = crate::spec_io::repo_root();
        let problems = compare(
            &read(&root, ENGLISH).expect("README.md"),
            &read(&root, KOREAN).expect("README.ko.md"),
        );
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }
}
