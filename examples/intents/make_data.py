"""Generate the bundled intent-classification data set for the example job.

The data imitate what a home assistant (lights, heating, weather, music,
alarms, timers, reminders) with a small banking skill (transfers, bills)
would hear.  Every row is built from a template, slot values and
paraphrase variations (politeness prefixes, suffixes, fillers, the odd typo).

The task is made deliberately imperfect so that a fine-tuned model does not
reach F1 = 1.0 after one epoch:

* intents share vocabulary (``lights on`` / ``lights off``, ``alarm`` /
  ``timer`` / ``reminder``, ``transfer`` / ``pay bill``, ``temperature`` /
  ``weather``);
* a share of the rows come from *ambiguous* templates whose label is drawn
  between two intents (for example ``switch the kitchen lights`` or
  ``what's the temperature``);
* a small share of the rows carry a random wrong label (label noise).

The output is a CSV file in the same shape as the public ATIS file: no
header, two columns ``intent, text`` separated by a comma and a space, the
text lowercased and without commas.  The same arguments always produce the
same bytes.  Only the standard library is used.

Usage::

    python examples/intents/make_data.py --out data/intents.csv [--rows N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
from collections.abc import Sequence

DEFAULT_ROWS = 2400
DEFAULT_SEED = 13
#: Share of rows whose label is replaced by a random other intent.
DEFAULT_LABEL_NOISE = 0.03
#: Share of rows generated from the ambiguous (two-label) templates.
DEFAULT_AMBIGUOUS = 0.10

# --------------------------------------------------------------------------
# Slot values
# --------------------------------------------------------------------------

# fmt: off
SLOTS: dict[str, Sequence[str]] = {
    "room": (
        "kitchen", "living room", "bedroom", "bathroom", "hallway", "office",
        "garage", "dining room", "kids room", "basement", "porch", "garden",
        "guest room", "attic", "study", "upstairs", "downstairs", "patio",
    ),
    "light": (
        "lights", "light", "lamp", "lamps", "ceiling light", "floor lamp",
        "desk lamp", "spotlights", "light strip", "bulbs", "reading light",
        "night light", "overhead lights", "fairy lights",
    ),
    "temp": (
        "18", "19", "20", "21", "22", "23", "24", "25", "16", "17", "26",
        "sixty eight", "seventy", "seventy two", "sixty five", "twenty one",
    ),
    "unit": ("degrees", "degrees celsius", "degrees fahrenheit", ""),
    "city": (
        "boston", "denver", "paris", "london", "berlin", "tokyo", "madrid",
        "chicago", "seattle", "rome", "dublin", "oslo", "lisbon", "toronto",
        "sydney", "new york", "san francisco", "amsterdam", "vienna", "miami",
    ),
    "day": (
        "today", "tomorrow", "tonight", "this weekend", "on monday",
        "on tuesday", "on wednesday", "on thursday", "on friday",
        "on saturday", "on sunday", "this afternoon", "tomorrow morning",
        "next week", "this evening",
    ),
    "weather": (
        "rain", "snow", "sunny", "windy", "foggy", "stormy", "cloudy", "hot",
        "cold", "humid", "freezing",
    ),
    "artist": (
        "the beatles", "taylor swift", "miles davis", "daft punk", "adele",
        "bob marley", "queen", "radiohead", "beyonce", "nirvana", "mozart",
        "the rolling stones", "ed sheeran", "norah jones", "coldplay",
        "johnny cash", "abba", "billie eilish",
    ),
    "genre": (
        "jazz", "rock", "classical music", "hip hop", "lo fi beats", "pop",
        "country", "blues", "reggae", "techno", "folk music", "metal",
        "relaxing music", "chill music", "workout music",
    ),
    "song": (
        "yesterday", "bohemian rhapsody", "hey jude", "imagine",
        "hotel california", "wonderwall", "shape of you", "bad guy",
        "dancing queen", "purple rain", "clair de lune", "hallelujah",
    ),
    "clock": (
        "6 am", "6:30 am", "7 am", "7:15 am", "5:45 am", "8 am", "9 pm",
        "noon", "midnight", "six thirty", "seven o clock", "quarter past six",
        "half past seven", "10 pm", "4 pm", "8:30 in the morning",
    ),
    "duration": (
        "5 minutes", "ten minutes", "15 minutes", "twenty minutes",
        "half an hour", "an hour", "45 seconds", "90 seconds", "3 minutes",
        "two hours", "25 minutes", "a minute", "forty minutes", "8 minutes",
    ),
    "task": (
        "call mom", "take out the trash", "water the plants", "buy milk",
        "pick up the kids", "pay the rent", "take my medicine",
        "feed the cat", "check the oven", "book a dentist appointment",
        "send the report", "move the car", "call the plumber",
        "renew my passport", "charge my phone", "walk the dog",
    ),
    "amount": (
        "50 dollars", "20 euros", "100 dollars", "$75", "two hundred dollars",
        "30 bucks", "1000 dollars", "15 pounds", "a hundred euros",
        "45 dollars", "250 dollars", "12 dollars 50",
    ),
    "person": (
        "john", "my sister", "mom", "dad", "alex", "sarah", "my landlord",
        "my brother", "emma", "david", "my roommate", "lisa", "the babysitter",
        "carlos", "my friend mike",
    ),
    "account": (
        "savings", "checking", "savings account", "checking account",
        "joint account", "business account", "credit card",
    ),
    "bill": (
        "electricity bill", "phone bill", "water bill", "internet bill",
        "gas bill", "credit card bill", "rent", "insurance", "cable bill",
        "mortgage payment", "car loan", "utility bill", "doctor bill",
    ),
    "company": (
        "the power company", "comcast", "verizon", "the water company",
        "my landlord", "the gas company", "the insurance company",
        "the dentist", "my credit card company", "the gym",
    ),
}

# --------------------------------------------------------------------------
# Intents: name -> (weight, templates)
# --------------------------------------------------------------------------

INTENTS: dict[str, tuple[float, Sequence[str]]] = {
    "lights_on": (1.1, (
        "turn on the {light}",
        "turn on the {room} {light}",
        "turn the {room} {light} on",
        "switch on the {light} in the {room}",
        "switch the {room} {light} on",
        "lights on in the {room}",
        "put the {light} on",
        "it is too dark in the {room}",
        "i can't see anything in the {room}",
        "make the {room} brighter",
        "brighten the {room} {light}",
        "light up the {room}",
        "power on the {room} {light}",
        "i need some light in the {room}",
        "set the {room} {light} to full brightness",
        "can we get some light in here",
        "turn up the {light} in the {room}",
        "activate the {room} {light}",
    )),
    "lights_off": (1.1, (
        "turn off the {light}",
        "turn off the {room} {light}",
        "turn the {room} {light} off",
        "switch off the {light} in the {room}",
        "switch the {room} {light} off",
        "lights off in the {room}",
        "kill the {light} in the {room}",
        "it is too bright in the {room}",
        "dim the {room} {light}",
        "shut off the {room} {light}",
        "power down the {light} in the {room}",
        "nobody is in the {room} so turn the {light} off",
        "make the {room} darker",
        "turn down the {light} in the {room}",
        "the {room} {light} can go off now",
        "deactivate the {room} {light}",
        "i am going to sleep turn the {light} off",
    )),
    "set_temperature": (1.0, (
        "set the thermostat to {temp} {unit}",
        "set the temperature in the {room} to {temp} {unit}",
        "make it {temp} {unit} in the {room}",
        "turn the heating up",
        "turn the heat down in the {room}",
        "it is cold in the {room}",
        "it is too hot in here",
        "i am freezing make it warmer",
        "warm up the {room}",
        "cool down the {room} please",
        "raise the temperature by two degrees",
        "lower the temperature to {temp}",
        "change the thermostat to {temp} {unit}",
        "turn on the air conditioning in the {room}",
        "heat the house to {temp} {unit} {day}",
        "can you bump the heat up a bit",
        "keep the {room} at {temp} {unit}",
    )),
    "weather": (1.0, (
        "what is the weather like {day}",
        "what's the weather in {city} {day}",
        "will it {weather_verb} {day}",
        "is it going to be {weather} in {city} {day}",
        "do i need an umbrella {day}",
        "what is the forecast for {city}",
        "how hot will it be in {city} {day}",
        "how cold is it outside",
        "is it {weather} outside",
        "should i wear a jacket {day}",
        "give me the weather forecast for {day}",
        "what's the forecast {day}",
        "tell me the weather in {city}",
        "will it be {weather} {day}",
        "what temperature will it be in {city} {day}",
        "any chance of {weather_noun} {day}",
    )),
    "play_music": (1.0, (
        "play {artist}",
        "play some {genre}",
        "play {song} by {artist}",
        "put on {song}",
        "i want to listen to {artist}",
        "play {genre} in the {room}",
        "can you play something by {artist}",
        "start my {genre} playlist",
        "shuffle songs by {artist}",
        "put some {genre} on",
        "play the song {song}",
        "i feel like listening to {genre}",
        "queue up {song}",
        "blast some {genre} in the {room}",
        "resume the music",
        "play music",
    )),
    "set_alarm": (0.9, (
        "set an alarm for {clock}",
        "wake me up at {clock}",
        "wake me up at {clock} {day}",
        "set my alarm to {clock}",
        "i need to get up at {clock} {day}",
        "create an alarm at {clock}",
        "alarm for {clock} please",
        "make sure i am awake by {clock}",
        "set a wake up alarm for {clock} {day}",
        "can you wake me at {clock}",
        "change my alarm to {clock}",
        "add an alarm at {clock} on weekdays",
        "set a {clock} alarm",
        "i have to be up at {clock}",
    )),
    "set_timer": (0.9, (
        "set a timer for {duration}",
        "start a {duration} timer",
        "timer for {duration}",
        "count down {duration}",
        "set the timer to {duration}",
        "put a timer on for {duration}",
        "give me a {duration} countdown",
        "start the kitchen timer for {duration}",
        "time {duration} for the pasta",
        "let me know when {duration} have passed",
        "set a {duration} timer for the oven",
        "begin a countdown of {duration}",
        "how much time is left on my timer",
        "add {duration} to the timer",
    )),
    "create_reminder": (0.9, (
        "remind me to {task}",
        "remind me to {task} at {clock}",
        "remind me {day} to {task}",
        "set a reminder to {task}",
        "create a reminder to {task} {day}",
        "don't let me forget to {task}",
        "remind me in {duration} to {task}",
        "i need a reminder to {task} at {clock}",
        "add a reminder {task}",
        "make sure i remember to {task} {day}",
        "can you remind me about {task} later",
        "put a reminder in for {clock} to {task}",
        "note to self {task} {day}",
        "ping me {day} about {task}",
    )),
    "transfer_money": (0.85, (
        "transfer {amount} to {person}",
        "send {amount} to {person}",
        "move {amount} from {account} to {account2}",
        "transfer {amount} from my {account} to my {account2}",
        "wire {amount} to {person}",
        "give {person} {amount}",
        "i want to send money to {person}",
        "can you transfer {amount} to {person} {day}",
        "send {person} {amount} for dinner",
        "pay {person} back {amount}",
        "move money into my {account}",
        "i owe {person} {amount} please send it",
        "make a transfer of {amount} to {person}",
        "split the bill with {person} and send {amount}",
    )),
    "pay_bill": (0.85, (
        "pay my {bill}",
        "pay the {bill} {day}",
        "pay {amount} toward my {bill}",
        "i need to pay the {bill}",
        "settle my {bill} with {company}",
        "pay {company}",
        "pay my {bill} from {account}",
        "make a payment to {company}",
        "schedule a payment for the {bill} {day}",
        "has my {bill} been paid",
        "set up autopay for my {bill}",
        "pay {amount} to {company}",
        "take care of the {bill} please",
        "when is my {bill} due",
    )),
}

# Templates whose label is genuinely unclear: (template, intent_a, intent_b,
# probability of intent_a).  They draw on vocabulary of both intents.
AMBIGUOUS: Sequence[tuple[str, str, str, float]] = (
    ("switch the {room} {light}", "lights_on", "lights_off", 0.5),
    ("toggle the {light} in the {room}", "lights_on", "lights_off", 0.5),
    ("change the {room} {light}", "lights_on", "lights_off", 0.5),
    ("do something about the {light} in the {room}", "lights_off", "lights_on", 0.5),
    ("what is the temperature in the {room}", "set_temperature", "weather", 0.6),
    ("what's the temperature right now", "weather", "set_temperature", 0.5),
    ("is it warm enough {day}", "weather", "set_temperature", 0.6),
    ("it feels chilly {day}", "set_temperature", "weather", 0.5),
    ("alert me in {duration}", "set_timer", "create_reminder", 0.5),
    ("beep at me in {duration}", "set_timer", "set_alarm", 0.6),
    ("set something for {clock}", "set_alarm", "create_reminder", 0.5),
    ("wake me in {duration}", "set_timer", "set_alarm", 0.5),
    ("get me up at {clock} to {task}", "set_alarm", "create_reminder", 0.5),
    ("at {clock} {task}", "create_reminder", "set_alarm", 0.6),
    ("send {amount} to {company}", "pay_bill", "transfer_money", 0.5),
    ("pay {person} {amount} for the {bill}", "transfer_money", "pay_bill", 0.5),
    ("move {amount} to cover the {bill}", "pay_bill", "transfer_money", 0.5),
    ("put on some music to wake me at {clock}", "set_alarm", "play_music", 0.5),
    ("play {genre} for {duration}", "play_music", "set_timer", 0.7),
)

# Prefixes that suit any utterance, and polite ones that only suit commands
# (templates that start with a verb in COMMAND_VERBS).
PREFIXES: Sequence[tuple[str, float]] = (
    ("", 8.0), ("hey ", 0.8), ("hey assistant ", 0.6), ("ok ", 0.5),
    ("um ", 0.3), ("assistant ", 0.4), ("hi ", 0.3), ("so ", 0.2),
    ("yo ", 0.15), ("excuse me ", 0.15), ("quick one ", 0.1),
)
POLITE_PREFIXES: Sequence[tuple[str, float]] = (
    ("please ", 1.0), ("can you ", 1.2), ("could you ", 0.8),
    ("would you ", 0.4), ("i'd like you to ", 0.3), ("go ahead and ", 0.2),
    ("hey can you ", 0.4), ("i want you to ", 0.2),
)
COMMAND_VERBS = frozenset((
    "turn", "switch", "put", "make", "brighten", "light", "power", "set",
    "kill", "dim", "shut", "warm", "cool", "raise", "lower", "change", "heat",
    "keep", "give", "tell", "play", "start", "shuffle", "queue", "blast",
    "resume", "create", "add", "count", "time", "begin", "remind", "send",
    "move", "transfer", "wire", "pay", "settle", "schedule", "take",
    "activate", "deactivate", "toggle", "get", "wake", "alert", "beep",
))
SUFFIXES: Sequence[tuple[str, float]] = (
    ("", 8.0), (" please", 1.2), (" thanks", 0.8), (" thank you", 0.5),
    (" right now", 0.4), (" for me", 0.5), (" asap", 0.2), (" now", 0.4),
    (" if you can", 0.2), (" real quick", 0.15), (" ok", 0.2),
    (" when you get a chance", 0.1),
)
WEATHER_VERBS = ("rain", "snow", "be sunny", "storm", "get cold", "warm up",
                 "be windy", "drizzle")
WEATHER_NOUNS = ("rain", "snow", "showers", "thunderstorms", "sunshine",
                 "frost", "hail", "fog")
# Common slips used to add surface noise: (right, wrong).
TYPOS = (("the", "teh"), ("please", "plz"), ("you", "u"), ("lights", "lites"),
         ("tomorrow", "tmrw"), ("temperature", "temp"), ("minutes", "mins"),
         ("reminder", "remider"), ("alarm", "alarn"), ("weather", "wether"),
         ("music", "musik"), ("transfer", "tranfer"), ("dollars", "dollar"))

# fmt: on

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_SPACES = re.compile(r"\s+")


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    total = sum(w for _, w in options)
    x = rng.random() * total
    for value, weight in options:
        x -= weight
        if x < 0:
            return value
    return options[-1][0]


def _fill(template: str, rng: random.Random) -> str:
    chosen: dict[str, str] = {}

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "weather_verb":
            return rng.choice(WEATHER_VERBS)
        if name == "weather_noun":
            return rng.choice(WEATHER_NOUNS)
        if name == "account2":
            others = [a for a in SLOTS["account"] if a != chosen.get("account")]
            return rng.choice(others)
        value = rng.choice(SLOTS[name])
        chosen[name] = value
        return value

    return _PLACEHOLDER.sub(repl, template)


def _vary(text: str, rng: random.Random) -> str:
    """Apply paraphrase-level variation: prefixes, suffixes, small slips."""
    first = text.split(" ", 1)[0]
    if first in COMMAND_VERBS and rng.random() < 0.35:
        prefix = _weighted(rng, POLITE_PREFIXES)
    else:
        prefix = _weighted(rng, PREFIXES)
    suffix = _weighted(rng, SUFFIXES)
    if suffix and text.endswith(suffix.strip()):
        suffix = ""
    text = prefix + text + suffix
    roll = rng.random()
    if roll < 0.06:
        wrong = [(a, b) for a, b in TYPOS if f" {a} " in f" {text} "]
        if wrong:
            a, b = rng.choice(wrong)
            text = f" {text} ".replace(f" {a} ", f" {b} ", 1).strip()
    elif roll < 0.09:
        words = text.split()
        if len(words) > 3:  # drop one word, as speech recognisers do
            del words[rng.randrange(1, len(words))]
            text = " ".join(words)
    return text


def _clean(text: str) -> str:
    text = text.lower().replace(",", " ")
    return _SPACES.sub(" ", text).strip()


def generate_rows(
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    label_noise: float = DEFAULT_LABEL_NOISE,
    ambiguous: float = DEFAULT_AMBIGUOUS,
) -> list[tuple[str, str]]:
    """Return ``rows`` (intent, text) pairs; deterministic for a given seed."""
    if rows < 1:
        raise ValueError("rows must be positive")
    rng = random.Random(seed)
    names = list(INTENTS)
    weights = [INTENTS[n][0] for n in names]
    out: list[tuple[str, str]] = []
    for _ in range(rows):
        if rng.random() < ambiguous:
            template, first, second, p_first = rng.choice(AMBIGUOUS)
            label = first if rng.random() < p_first else second
        else:
            label = rng.choices(names, weights=weights)[0]
            template = rng.choice(INTENTS[label][1])
        text = _clean(_vary(_fill(template, rng), rng))
        if rng.random() < label_noise:
            label = rng.choice([n for n in names if n != label])
        out.append((label, text))
    return out


def format_rows(rows: Sequence[tuple[str, str]]) -> str:
    """Render rows as ATIS-style CSV text (``intent, text`` per line)."""
    return "".join(f"{label}, {text}\n" for label, text in rows)


def write_dataset(
    out: str,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
) -> str:
    """Generate the data set and write it to ``out``; return the path."""
    directory = os.path.dirname(out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    data = format_rows(generate_rows(rows=rows, seed=seed))
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(data)
    os.replace(tmp, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/intents.csv", help="output CSV path (default: data/intents.csv)")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"number of rows (default: {DEFAULT_ROWS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default: {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be positive")
    write_dataset(args.out, rows=args.rows, seed=args.seed)
    print(f"wrote {args.rows} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
