"""Conversational English sentences for the teacher corpus, generated from a grammar.

Written for avgen (no outside text, so no licence questions): greetings, questions,
answers, exclamations, backchannels and long multi-clause sentences, with numbers,
names and places for variety. `sentences(n, seed)` is deterministic.
"""

from __future__ import annotations

import random

NAMES = ("Anna Ben Clara David Emma Frank Grace Henry Isla Jack Kate Leo Maya Noah Olivia "
         "Peter Quinn Rosa Sam Tara Victor Wendy Yusuf Zoe Eileen Marcus Priya Omar Lucy "
         "George").split()
PLACES = ("the library|the station|the market|the harbour|the old bridge|the museum|"
          "the park|the bakery|the airport|the beach|the hospital|the office|the garden|"
          "the village|the mountains|the river|the cinema|the school|the lab|the kitchen|"
          "the theatre|the zoo|the north coast|the city centre|the farm").split("|")
THINGS = ("the report|a new bicycle|the blue jacket|some fresh bread|the keys|a cup of tea|"
          "the map|an umbrella|the tickets|a good book|the photographs|the old piano|"
          "a pair of boots|the recipe|the computer|a birthday cake|the letters|the telescope|"
          "a basket of apples|the guitar|the weather forecast|the garden chairs|a warm scarf|"
          "the paint brushes|the schedule|the lamp|a box of matches|the violin|the magazine|"
          "the shopping list").split("|")
ACTIVITIES = ("cooking dinner|fixing the roof|learning French|painting the fence|"
              "writing a novel|walking the dog|building a boat|planting tomatoes|"
              "reading about whales|practising the violin|cleaning the garage|"
              "studying for the exam|watching the stars|baking bread|running every morning|"
              "sorting old photos|repairing the clock|swimming in the lake|"
              "knitting a sweater|climbing the hill").split("|")
FEELINGS = ("happy|tired|surprised|worried|excited|curious|relieved|nervous|proud|calm|"
            "puzzled|delighted|annoyed|thrilled|sleepy").split("|")
TIMES = ("this morning|last night|yesterday|on Monday|next week|tomorrow|at noon|"
         "in the afternoon|on Friday evening|last summer|in June|at dawn|after lunch|"
         "before breakfast|at the weekend|three days ago|in twenty minutes|"
         "at half past six").split("|")
ADJECTIVES = ("quiet|busy|beautiful|strange|enormous|tiny|bright|cold|warm|noisy|cheerful|"
              "gloomy|ancient|modern|peaceful|crowded|lovely|odd|fresh|smooth").split("|")
VERBS_PAST = ("found|bought|lost|borrowed|painted|moved|fixed|sold|opened|carried|dropped|"
              "washed|hid|packed|measured|checked|wrapped|delivered").split("|")
VERBS_BASE = ("find|buy|borrow|paint|move|fix|sell|open|carry|wash|pack|measure|check|wrap|"
              "deliver|bring|keep|share").split("|")

GREETINGS = ["Hello!", "Hi there!", "Good morning.", "Good evening.", "Hey, how are you?",
             "Nice to see you again.", "Long time no see!", "How have you been?",
             "Welcome back!", "Good afternoon, everyone.", "Oh, hello!", "Hi, it's me again."]
BACKCHANNELS = ["Yeah.", "Right.", "Okay.", "Mm-hmm.", "Sure.", "Really?", "I see.",
                "Exactly.", "Oh, wow.", "Of course.", "No way!", "Absolutely.", "Uh-huh.",
                "Fair enough.", "Oh, really?", "That makes sense.", "Good point.", "Wow!",
                "Yes, indeed.", "Hmm, maybe.", "Totally.", "Oh no!", "Alright.", "Got it."]

TEMPLATES = [
    "{name} {past} {thing} at {place} {time}.",
    "Did you see {thing} at {place}?",
    "Where did {name} put {thing}?",
    "I was {feeling} when {name} {past} {thing}.",
    "Have you ever been to {place}?",
    "We should {base} {thing} before {time2}.",
    "Why is {place} so {adj} {time}?",
    "{name} has been {activity} since {time}.",
    "Could you {base} {thing} for me, please?",
    "What a {adj} day for {activity}!",
    "I can't believe {name} {past} {thing}!",
    "When are you going to {place}?",
    "Honestly, {place} was {adj} {time}, and {name} was {feeling}.",
    "How long have you been {activity}?",
    "If it rains {time}, we'll meet at {place} instead.",
    "My friend {name} is {feeling} about {activity}.",
    "There were {num} people at {place} {time}.",
    "It costs {money}, which is {adj} for {thing}.",
    "Is it true that {name} {past} {thing}?",
    "{name} told me that {place} is {adj} {time}.",
    "Please don't forget {thing} when you go to {place}.",
    "I think {activity} is {adj}, but {name} disagrees.",
    "We waited {num} minutes at {place} for {name}.",
    "Which way is {place} from here?",
    "After {activity}, {name} felt {feeling} and went home.",
    "You know, {name} and {name2} {past} {thing} together.",
    "Wait, did {name} really go to {place} {time}?",
    "That's {adj}! I never thought {name} would {base} {thing}.",
    "On the {ordinal} of {month}, {name} {past} {thing} at {place}.",
    "Because {place} was so {adj}, {name} decided to stay home and keep {activity}.",
    "Although I was {feeling}, I {past} {thing} and walked to {place} with {name}.",
    "Do you want to come {activity} with us {time}?",
    "Sorry, I didn't catch that. Did you say {place}?",
    "Let's meet at {place} at {clock}.",
    "The train leaves at {clock}, so we have {num} minutes.",
    "Who {past} {thing}?",
    "{name} is the most {feeling} person I know.",
    "Thanks so much for {thing}, {name}!",
    "Well, {place} is {adj}, the food is good, and {name} loves it.",
    "I'm not sure, but I think {name} {past} {thing} {time}.",
]
MONTHS = ("January February March April May June July August September October November "
          "December").split()


def _fill(template: str, rng: random.Random) -> str:
    name, name2 = rng.sample(NAMES, 2)
    return template.format(
        name=name, name2=name2, place=rng.choice(PLACES), thing=rng.choice(THINGS),
        activity=rng.choice(ACTIVITIES), feeling=rng.choice(FEELINGS),
        time=rng.choice(TIMES), time2=rng.choice(TIMES), adj=rng.choice(ADJECTIVES),
        past=rng.choice(VERBS_PAST), base=rng.choice(VERBS_BASE),
        num=rng.randint(2, 95), money=f"${rng.randint(1, 60)}.{rng.choice(['00', '50', '99', '25'])}",
        ordinal=f"{rng.randint(1, 28)}{'th'}", month=rng.choice(MONTHS),
        clock=f"{rng.randint(1, 12)}:{rng.choice(['00', '15', '30', '45', '05'])}",
    ).replace("1th", "1st").replace("2th", "2nd").replace("3th", "3rd").replace(
        "11st", "11th").replace("12nd", "12th").replace("13rd", "13th")


def _capitalise(text: str) -> str:
    return text[0].upper() + text[1:]


def sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct sentences (about 1 in 8 a greeting or backchannel, some long
    two-sentence turns), deterministic for a seed."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    fixed = GREETINGS + BACKCHANNELS
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > count * 50:
            raise RuntimeError(f"the grammar cannot make {count} distinct sentences")
        roll = rng.random()
        if roll < 0.12:
            text = rng.choice(fixed)
            if text in seen:  # fixed lines recur in dialogues but once in the list
                continue
        elif roll < 0.25:
            text = _fill(rng.choice(TEMPLATES), rng) + " " + _fill(rng.choice(TEMPLATES), rng)
        else:
            text = _fill(rng.choice(TEMPLATES), rng)
        text = _capitalise(text)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# Sentences for the phones the grammar above never produces (glottal stop + syllabic n
# in "button", unstressed diphthongs in "cowboy", "outdoor", the fricatives of "Bach",
# "loch", "Llanelli"), so every phone espeak-ng emits for English is in the corpus.
COVERAGE = [
    "The kitten pulled a button off my cotton shirt.",
    "I'm certain it was written on the mountain map.",
    "She has forgotten the curtain in the fountain room.",
    "Have you eaten? The kitten has bitten the carton.",
    "A cowboy and an android walked into the warehouse.",
    "However you do it, somehow it has to be outdoor work.",
    "We listened to Bach by the loch last summer.",
    "My cousin moved from Llanelli to Britain's north coast.",
    "Is the button on the mountain bike certain to hold?",
    "The outdoor market sells cotton, buttons and kittens.",
    "Somehow the cowboy had forgotten his written notes.",
    "However hard I try, the curtain won't stay up.",
    "Bach wrote it, certainly, but who has written the words?",
    "The android in the warehouse sorted the cotton bales.",
    "Was it a kitten or a button that fell in the fountain?",
    "Let's eat outdoors, however cold the mountain wind is.",
    "I'm not certain the cowboy ever saw the loch.",
    "Somehow my kitten got into the warehouse again!",
    "The written test was easier than I had feared.",
    "We sang a song from Llanelli by the fountain.",
    "What's the password for the home network?",
    "I finished my homework and the artwork before the fireworks.",
    "Is your keyword on the list? Your name is nearby.",
    "The graph was linear, with a periodic bump every week.",
    "Are you gonna meet us at the supermarket?",
    "The company has a hierarchical structure, like a pyramid.",
    "Please write the identifier on each box.",
    "From my viewpoint, the entrypoint of the maze is on the left.",
    "A unary code uses just one symbol, which is odd but simple.",
    "We're gonna need a bigger network, I think.",
]
