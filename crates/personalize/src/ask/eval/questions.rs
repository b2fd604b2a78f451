//! The evaluation's questions: templates with several paraphrases (none
//! of them the prompt's examples), filled from the generated library, each
//! with the query a person would accept and the true answer computed from
//! the generated facts directly, not by the query engine.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate};
use hearth_ml::rng::SplitMix64;
use hearth_store::ItemId;

use super::library::{Generated, NOTE_WORDS, PHOTO_LABELS};

/// The day the evaluation's questions are asked.
pub(crate) fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 12, 1).expect("date")
}

/// A true answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Truth {
    Refusal,
    Number(i64),
    Date(NaiveDate),
    Items(BTreeSet<ItemId>),
}

/// One question with its accepted query and true answer.
#[derive(Debug, Clone)]
pub(crate) struct Question {
    pub(crate) text: String,
    pub(crate) query: String,
    pub(crate) truth: Truth,
}

const COUNT_LABEL: &[&str] = &[
    "how many pictures of {L} do I have?",
    "count my photos of {L}",
    "what's the number of {L} photos in my library?",
    "how many shots of {L} are there?",
];
const COUNT_LABEL_YEAR: &[&str] = &[
    "how many photos of {L} did I take in {Y}?",
    "in {Y}, how many pictures of {L} did I take?",
    "number of {L} photos from {Y}?",
    "how many times did I photograph {L} in {Y}?",
];
const COUNT_LABEL_SUMMER: &[&str] = &[
    "how many photos of {L} are from last summer?",
    "last summer, how many pictures of {L} did I take?",
    "count the {L} shots from last summer",
];
const COUNT_LABEL_MONTH: &[&str] = &[
    "how many photos of {L} did I take in {M} {Y}?",
    "pictures of {L} from {M} {Y}: how many?",
];
const COUNT_LABEL_THIS_YEAR: &[&str] = &[
    "how many photos of {L} this year?",
    "this year's count of {L} pictures?",
];
const COUNT_YEAR: &[&str] = &[
    "how many photos did I take in {Y}?",
    "total number of pictures from {Y}?",
    "how many pictures are from {Y}?",
];
const LIST_WORD: &[&str] = &[
    "find my notes that mention {W}",
    "which notes talk about {W}?",
    "show notes with the word {W}",
    "list the notes mentioning {W}",
];
const COUNT_WORD: &[&str] = &[
    "how many notes mention {W}?",
    "in how many notes do I write about {W}?",
    "count notes mentioning {W}",
];
const FIRST_LABEL: &[&str] = &[
    "when did I take my first picture of {L}?",
    "what's the date of the earliest photo of {L}?",
    "when was {L} first photographed?",
];
const LAST_LABEL: &[&str] = &[
    "when did I last take a photo of {L}?",
    "date of my most recent {L} picture?",
    "when is the latest photo of {L} from?",
];
const SPAN_LABEL: &[&str] = &[
    "how many days passed between my first and last photos of {L}?",
    "days from the earliest to the latest {L} photo?",
    "how long, in days, between the first and most recent picture of {L}?",
];
const MORE_LABEL: &[&str] = &[
    "how many more photos of {L} than {K} do I have?",
    "difference between my number of {L} photos and {K} photos?",
];
const COUNT_NOTES: &[&str] = &[
    "how many notes do I have?",
    "total number of my notes?",
    "count all my notes",
];
const REFUSALS: &[&str] = &[
    "who won the world cup in 2018?",
    "what is the weather tomorrow?",
    "how tall is the Eiffel tower?",
    "what's the square root of 2?",
    "translate hello into French",
    "what time is it in Tokyo?",
    "how do I bake bread?",
    "who is the president of Brazil?",
];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `n` questions drawn from `seed`, none of whose text is in `avoid`.
pub(crate) fn draw(
    generated: &Generated,
    n: usize,
    seed: u64,
    avoid: &BTreeSet<String>,
) -> Vec<Question> {
    let mut rng = SplitMix64::new(seed);
    let mut questions = Vec::with_capacity(n);
    let mut seen = avoid.clone();
    // Bounded: the templates hold far more distinct questions than asked.
    for _ in 0..n * 50 {
        if questions.len() == n {
            break;
        }
        let question = one(generated, &mut rng);
        if seen.insert(question.text.clone()) {
            questions.push(question);
        }
    }
    questions
}

fn pick<'a>(rng: &mut SplitMix64, from: &[&'a str]) -> &'a str {
    from[(rng.next_u64() % from.len() as u64) as usize]
}

fn one(generated: &Generated, rng: &mut SplitMix64) -> Question {
    let label = pick(rng, PHOTO_LABELS);
    let other = loop {
        let other = pick(rng, PHOTO_LABELS);
        if other != label {
            break other;
        }
    };
    let year = 2021 + (rng.next_u64() % 4) as i32;
    let month = 1 + (rng.next_u64() % 12) as u32;
    let word = pick(rng, NOTE_WORDS);
    let fill = |template: &str| {
        template
            .replace("{L}", label)
            .replace("{K}", other)
            .replace("{Y}", &year.to_string())
            .replace("{M}", MONTHS[month as usize - 1])
            .replace("{W}", word)
    };
    let counted = |from: NaiveDate, to: NaiveDate| {
        Truth::Number(
            generated
                .photos
                .iter()
                .filter(|p| p.label == label && (from..=to).contains(&p.taken))
                .count() as i64,
        )
    };
    let all = (NaiveDate::MIN, NaiveDate::MAX);
    let year_span = (ymd(year, 1, 1), ymd(year, 12, 31));
    let labelled: Vec<NaiveDate> = generated
        .photos
        .iter()
        .filter(|p| p.label == label)
        .map(|p| p.taken)
        .collect();
    let first = labelled.iter().min().copied();
    let last = labelled.iter().max().copied();
    let with_word: BTreeSet<ItemId> = generated
        .notes
        .iter()
        .filter(|note| note.words.contains(&word))
        .map(|note| note.id)
        .collect();
    let (template, query, truth) = match rng.next_u64() % 14 {
        0 => (
            pick(rng, COUNT_LABEL),
            format!("count photos label \"{label}\""),
            counted(all.0, all.1),
        ),
        1 => (
            pick(rng, COUNT_LABEL_YEAR),
            format!("count photos label \"{label}\" in {year}"),
            counted(year_span.0, year_span.1),
        ),
        2 => {
            let (from, to) = last_summer(today());
            (
                pick(rng, COUNT_LABEL_SUMMER),
                format!("count photos label \"{label}\" in last_summer"),
                counted(from, to),
            )
        }
        3 => {
            let from = ymd(year, month, 1);
            let to = if month == 12 {
                ymd(year, 12, 31)
            } else {
                ymd(year, month + 1, 1).pred_opt().expect("date")
            };
            (
                pick(rng, COUNT_LABEL_MONTH),
                format!("count photos label \"{label}\" in {year}-{month:02}"),
                counted(from, to),
            )
        }
        4 => {
            let year = today().year();
            (
                pick(rng, COUNT_LABEL_THIS_YEAR),
                format!("count photos label \"{label}\" in this_year"),
                counted(ymd(year, 1, 1), ymd(year, 12, 31)),
            )
        }
        5 => (
            pick(rng, COUNT_YEAR),
            format!("count photos in {year}"),
            Truth::Number(
                generated
                    .photos
                    .iter()
                    .filter(|p| p.taken.year() == year)
                    .count() as i64,
            ),
        ),
        6 => (
            pick(rng, LIST_WORD),
            format!("list notes text \"{}\"", word.to_lowercase()),
            Truth::Items(with_word),
        ),
        7 => (
            pick(rng, COUNT_WORD),
            format!("count notes text \"{}\"", word.to_lowercase()),
            Truth::Number(with_word.len() as i64),
        ),
        8 => (
            pick(rng, FIRST_LABEL),
            format!("first photos label \"{label}\""),
            first.map_or(Truth::Refusal, Truth::Date),
        ),
        9 => (
            pick(rng, LAST_LABEL),
            format!("last photos label \"{label}\""),
            last.map_or(Truth::Refusal, Truth::Date),
        ),
        10 => (
            pick(rng, SPAN_LABEL),
            format!("days_between(first photos label \"{label}\", last photos label \"{label}\")"),
            match (first, last) {
                (Some(first), Some(last)) => Truth::Number((last - first).num_days()),
                _ => Truth::Refusal,
            },
        ),
        11 => {
            let count = |l: &str| generated.photos.iter().filter(|p| p.label == l).count() as i64;
            (
                pick(rng, MORE_LABEL),
                format!("minus(count photos label \"{label}\", count photos label \"{other}\")"),
                Truth::Number(count(label) - count(other)),
            )
        }
        12 => (
            pick(rng, COUNT_NOTES),
            "count notes".to_owned(),
            Truth::Number(generated.notes.len() as i64),
        ),
        _ => (
            pick(rng, REFUSALS),
            "cannot_answer".to_owned(),
            Truth::Refusal,
        ),
    };
    Question {
        text: fill(template),
        query,
        truth,
    }
}

fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("a valid date")
}

/// The most recent June to August wholly before `today`.
fn last_summer(today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let year = if today > ymd(today.year(), 8, 31) {
        today.year()
    } else {
        today.year() - 1
    };
    (ymd(year, 6, 1), ymd(year, 8, 31))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_summer_is_the_last_whole_summer() {
        assert_eq!(
            last_summer(ymd(2024, 12, 1)),
            (ymd(2024, 6, 1), ymd(2024, 8, 31))
        );
        assert_eq!(
            last_summer(ymd(2024, 7, 1)),
            (ymd(2023, 6, 1), ymd(2023, 8, 31))
        );
    }
}
