"""Deterministic generator of grade-school word problems in GSM8K answer format.

The smoke run and the tests need a small problem set that ships with the project
(no download, no borrowed text). Each template draws its numbers from a seeded
``random.Random`` and writes an answer the way GSM8K does: a few reasoning lines
whose arithmetic carries ``<<expr=value>>`` calculator annotations, then a final
``#### N`` line. Every value is computed by :func:`_calc`, which refuses inexact
division, so the answers are right by construction (and the tests re-check them).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

NAMES = [
    "Amara", "Bruno", "Chen", "Dalia", "Emeka", "Freya", "Gustavo", "Hana", "Ivan", "Jonas",
    "Keiko", "Luis", "Mira", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tariq",
    "Uma", "Viktor", "Wen", "Yara", "Zane",
]
SHOP_ITEMS = [
    ("notebook", "notebooks"), ("pencil case", "pencil cases"), ("mango", "mangoes"),
    ("kite", "kites"), ("candle", "candles"), ("sticker sheet", "sticker sheets"),
    ("jar of honey", "jars of honey"), ("ball of yarn", "balls of yarn"),
]
TREATS = ["muffins", "dumplings", "granola bars", "lemon tarts", "rice cakes", "oat cookies"]
CROPS = ["tomato plants", "sunflowers", "pepper plants", "bean stalks", "lettuce heads"]
VEHICLES = ["van", "scooter", "bus", "truck", "motorbike"]

# A generated problem: the question text, the reasoning lines, and the integer answer.
Problem = tuple[str, list[str], int]


def _calc(a: int, op: str, b: int) -> tuple[str, int]:
    """Return (``"<<a op b=c>>c"``, c) for one calculator step; division must be exact."""
    if op == "+":
        value = a + b
    elif op == "-":
        value = a - b
    elif op == "*":
        value = a * b
    elif op == "/":
        if b == 0 or a % b != 0:
            raise ValueError(f"inexact division {a}/{b}; the template must draw divisible numbers")
        value = a // b
    else:
        raise ValueError(f"unknown operator {op!r}; use one of + - * /")
    return f"<<{a}{op}{b}={value}>>{value}", value


def _shopping(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    (item_a, items_a), (item_b, items_b) = rng.sample(SHOP_ITEMS, 2)
    count_a, price_a = rng.randint(2, 9), rng.randint(2, 15)
    count_b, price_b = rng.randint(2, 9), rng.randint(2, 15)
    question = (
        f"{name} buys {count_a} {items_a} for ${price_a} each and {count_b} {items_b} "
        f"for ${price_b} each. How much does {name} spend in total?"
    )
    text_a, cost_a = _calc(count_a, "*", price_a)
    text_b, cost_b = _calc(count_b, "*", price_b)
    text_total, total = _calc(cost_a, "+", cost_b)
    lines = [
        f"The {items_a} cost {count_a}*{price_a} = ${text_a}.",
        f"The {items_b} cost {count_b}*{price_b} = ${text_b}.",
        f"In total {name} spends {cost_a}+{cost_b} = ${text_total}.",
    ]
    return question, lines, total


def _ages(rng: random.Random) -> Problem:
    older, younger = rng.sample(NAMES, 2)
    young_age, factor, years = rng.randint(3, 14), rng.randint(2, 4), rng.randint(2, 12)
    question = (
        f"{younger} is {young_age} years old. {older} is {factor} times as old as {younger}. "
        f"What will be the sum of their ages in {years} years?"
    )
    text_old, old_age = _calc(young_age, "*", factor)
    text_now, sum_now = _calc(old_age, "+", young_age)
    text_later, answer = _calc(sum_now, "+", 2 * years)
    lines = [
        f"{older} is {young_age}*{factor} = {text_old} years old.",
        f"Together they are {old_age}+{young_age} = {text_now} years old now.",
        f"Each of them gets {years} years older, so the sum grows by {2 * years}: "
        f"{sum_now}+{2 * years} = {text_later}.",
    ]
    return question, lines, answer


def _speeds(rng: random.Random) -> Problem:
    name, vehicle = rng.choice(NAMES), rng.choice(VEHICLES)
    speed_1, hours_1 = rng.randint(3, 12) * 5, rng.randint(1, 5)
    speed_2, hours_2 = rng.randint(3, 12) * 5, rng.randint(1, 5)
    question = (
        f"{name} drives a {vehicle} at {speed_1} miles per hour for {hours_1} hours, then at "
        f"{speed_2} miles per hour for {hours_2} hours. How many miles does {name} travel?"
    )
    text_1, dist_1 = _calc(speed_1, "*", hours_1)
    text_2, dist_2 = _calc(speed_2, "*", hours_2)
    text_total, total = _calc(dist_1, "+", dist_2)
    lines = [
        f"In the first part {name} covers {speed_1}*{hours_1} = {text_1} miles.",
        f"In the second part {name} covers {speed_2}*{hours_2} = {text_2} miles.",
        f"Altogether that is {dist_1}+{dist_2} = {text_total} miles.",
    ]
    return question, lines, total


def _sharing(rng: random.Random) -> Problem:
    name, treat = rng.choice(NAMES), rng.choice(TREATS)
    friends, each_share = rng.randint(2, 8), rng.randint(3, 12)
    eaten = rng.randint(1, each_share - 1)
    baked = friends * each_share
    question = (
        f"{name} bakes {baked} {treat} and shares them equally among {friends} friends. "
        f"Each friend eats {eaten} of their {treat} right away. How many {treat} do the friends "
        f"have left altogether?"
    )
    text_share, share = _calc(baked, "/", friends)
    text_left, left_each = _calc(share, "-", eaten)
    text_total, total = _calc(left_each, "*", friends)
    lines = [
        f"Each friend gets {baked}/{friends} = {text_share} {treat}.",
        f"After eating, each friend has {share}-{eaten} = {text_left} left.",
        f"Together they have {left_each}*{friends} = {text_total} {treat} left.",
    ]
    return question, lines, total


def _discount(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    _, items = rng.choice(SHOP_ITEMS)
    percent = rng.choice([10, 20, 25, 50])
    price = rng.randint(1, 15) * 20  # a multiple of 20 keeps every percent above exact
    question = (
        f"A shop sells {items} for ${price}. During a sale the price is cut by {percent}%. "
        f"What does {name} pay for one of the {items} during the sale?"
    )
    text_scaled, scaled = _calc(price, "*", percent)
    text_cut, cut = _calc(scaled, "/", 100)
    text_final, final = _calc(price, "-", cut)
    lines = [
        f"The discount is {percent}% of ${price}: {price}*{percent} = {text_scaled} and "
        f"{scaled}/100 = ${text_cut}.",
        f"{name} pays {price}-{cut} = ${text_final}.",
    ]
    return question, lines, final


def _savings(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    per_week, weeks = rng.randint(3, 25), rng.randint(4, 16)
    spent = rng.randint(1, per_week * weeks - 1)
    question = (
        f"{name} saves ${per_week} every week for {weeks} weeks and then spends ${spent} "
        f"on a gift. How much money does {name} have left?"
    )
    text_saved, saved = _calc(per_week, "*", weeks)
    text_left, left = _calc(saved, "-", spent)
    lines = [
        f"{name} saves {per_week}*{weeks} = ${text_saved}.",
        f"After the gift {name} has {saved}-{spent} = ${text_left} left.",
    ]
    return question, lines, left


def _garden(rng: random.Random) -> Problem:
    name, crop = rng.choice(NAMES), rng.choice(CROPS)
    rows, per_row = rng.randint(3, 12), rng.randint(4, 15)
    lost = rng.randint(1, rows * per_row // 3)
    question = (
        f"{name} plants {rows} rows of {crop} with {per_row} in each row. Rabbits eat {lost} "
        f"of them. How many {crop} are left?"
    )
    text_planted, planted = _calc(rows, "*", per_row)
    text_left, left = _calc(planted, "-", lost)
    lines = [
        f"{name} plants {rows}*{per_row} = {text_planted} {crop}.",
        f"After the rabbits, {planted}-{lost} = {text_left} {crop} are left.",
    ]
    return question, lines, left


def _baking_bags(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    cups_per_batch, batches = rng.randint(2, 6), rng.randint(2, 9)
    cups_needed = cups_per_batch * batches
    # cups_per_batch itself is in 2..6, so the list always has a divisor to draw
    cups_per_bag = rng.choice([d for d in range(2, 9) if cups_needed % d == 0])
    question = (
        f"A recipe needs {cups_per_batch} cups of flour per batch. {name} wants to make "
        f"{batches} batches. A bag of flour holds {cups_per_bag} cups. How many bags of flour "
        f"does {name} need?"
    )
    text_cups, cups = _calc(cups_per_batch, "*", batches)
    text_bags, bags = _calc(cups, "/", cups_per_bag)
    lines = [
        f"{name} needs {cups_per_batch}*{batches} = {text_cups} cups of flour.",
        f"That is {cups}/{cups_per_bag} = {text_bags} bags.",
    ]
    return question, lines, bags


def _wages(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    rate, hours, days = rng.randint(8, 30), rng.randint(2, 8), rng.randint(2, 6)
    bonus = rng.randint(1, 10) * 5
    question = (
        f"{name} earns ${rate} per hour and works {hours} hours a day for {days} days. "
        f"At the end {name} also gets a ${bonus} bonus. How much does {name} earn in total?"
    )
    text_daily, daily = _calc(rate, "*", hours)
    text_days, pay = _calc(daily, "*", days)
    text_total, total = _calc(pay, "+", bonus)
    lines = [
        f"Each day {name} earns {rate}*{hours} = ${text_daily}.",
        f"Over {days} days that is {daily}*{days} = ${text_days}.",
        f"With the bonus the total is {pay}+{bonus} = ${text_total}.",
    ]
    return question, lines, total


def _reading(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    per_day, days = rng.randint(5, 30), rng.randint(2, 9)
    pages = per_day * days + rng.randint(10, 200)
    question = (
        f"A book has {pages} pages. {name} reads {per_day} pages a day for {days} days. "
        f"How many pages are still unread?"
    )
    text_read, read = _calc(per_day, "*", days)
    text_left, left = _calc(pages, "-", read)
    lines = [
        f"{name} reads {per_day}*{days} = {text_read} pages.",
        f"There are {pages}-{read} = {text_left} pages left.",
    ]
    return question, lines, left


def _fraction_class(rng: random.Random) -> Problem:
    denominator = rng.choice([2, 3, 4, 5])
    students = denominator * rng.randint(4, 10)
    absent = rng.randint(1, 3)
    question = (
        f"A class has {students} students. 1/{denominator} of them walk to school and the rest "
        f"take the bus. On Monday {absent} of the bus riders are absent. How many bus riders are "
        f"in class on Monday?"
    )
    text_walk, walkers = _calc(students, "/", denominator)
    text_bus, riders = _calc(students, "-", walkers)
    text_present, present = _calc(riders, "-", absent)
    lines = [
        f"{students}/{denominator} = {text_walk} students walk.",
        f"So {students}-{walkers} = {text_bus} students take the bus.",
        f"On Monday {riders}-{absent} = {text_present} bus riders are in class.",
    ]
    return question, lines, present


def _minutes_to_hours(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    minutes_each = rng.choice([5, 10, 12, 15, 20, 30])
    tasks = rng.randint(1, 12) * (60 // minutes_each)  # a whole number of hours
    question = (
        f"{name} repairs bicycles. Each repair takes {minutes_each} minutes. How many hours "
        f"does {name} need to repair {tasks} bicycles?"
    )
    text_minutes, minutes = _calc(minutes_each, "*", tasks)
    text_hours, hours = _calc(minutes, "/", 60)
    lines = [
        f"The repairs take {minutes_each}*{tasks} = {text_minutes} minutes.",
        f"That is {minutes}/60 = {text_hours} hours.",
    ]
    return question, lines, hours


def _fruit_halves(rng: random.Random) -> Problem:
    picker, neighbour = rng.sample(NAMES, 2)
    picked = rng.randint(5, 40) * 2
    bought = rng.randint(3, 25)
    question = (
        f"{picker} picks {picked} plums and gives half of them to {neighbour}. Then {picker} "
        f"buys {bought} more plums at the market. How many plums does {picker} have now?"
    )
    text_half, half = _calc(picked, "/", 2)
    text_now, now = _calc(half, "+", bought)
    lines = [
        f"{picker} gives away {picked}/2 = {text_half} plums and keeps {half}.",
        f"After the market {picker} has {half}+{bought} = {text_now} plums.",
    ]
    return question, lines, now


TEMPLATES: list[Callable[[random.Random], Problem]] = [
    _shopping, _ages, _speeds, _sharing, _discount, _savings, _garden,
    _baking_bags, _wages, _reading, _fraction_class, _minutes_to_hours, _fruit_halves,
]


def generate_problem(rng: random.Random, template_index: int | None = None) -> dict[str, str]:
    """Draw one problem as a GSM8K-format row ``{"question", "answer"}``.

    ``template_index`` picks a template from :data:`TEMPLATES`; None draws one from ``rng``.
    """
    if template_index is None:
        template_index = rng.randrange(len(TEMPLATES))
    if not 0 <= template_index < len(TEMPLATES):
        raise ValueError(f"template_index must be in [0, {len(TEMPLATES)}), got {template_index}")
    question, lines, answer = TEMPLATES[template_index](rng)
    return {"question": question, "answer": "\n".join(lines) + f"\n#### {answer}"}


def generate_problems(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Return ``n`` distinct problems, the same list for the same ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could not draw {n} distinct problems; ask for fewer")
        row = generate_problem(rng)
        if row["question"] not in seen:  # a repeated question would leak between train and test
            seen.add(row["question"])
            rows.append(row)
    return rows


def make_smoke_splits(
    n_train: int = 256, n_test: int = 64, seed: int = 0
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Return (train, test) rows: one stream of distinct problems, split so no question repeats."""
    rows = generate_problems(n_train + n_test, seed=seed)
    return rows[:n_train], rows[n_train:]


def write_smoke_dataset(
    out_dir: str | Path, n_train: int = 256, n_test: int = 64, seed: int = 0
) -> dict[str, Path]:
    """Write ``out_dir/train.jsonl`` and ``out_dir/test.jsonl``; return the paths by split name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = make_smoke_splits(n_train, n_test, seed)
    paths = {}
    for split, rows in (("train", train), ("test", test)):
        path = out_dir / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        paths[split] = path
    return paths
