"""Write data/external/topics.csv: short texts labelled with one of eight topics (a multi-class example task).

Generated from templates with a fixed seed, so the file is the same on every machine; the tests generate it the
same way. Usage: python examples/multiclass-topics/make_topics.py [output.csv] [rows]
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

TOPICS = {
    "computers": ["laptop", "keyboard", "compiler", "software update", "graphics card", "operating system"],
    "food": ["pasta", "curry", "sourdough bread", "ramen", "salad", "chocolate cake"],
    "law": ["contract", "court ruling", "appeal", "lawsuit", "new statute", "jury"],
    "sport": ["football match", "marathon", "tennis final", "swimming race", "cricket test", "ski jump"],
    "music": ["album", "concert", "guitar solo", "symphony", "new single", "jazz trio"],
    "travel": ["flight", "hotel", "train journey", "road trip", "passport queue", "beach resort"],
    "health": ["vaccine", "blood pressure", "sleep study", "clinic visit", "diet plan", "flu season"],
    "money": ["mortgage rate", "stock market", "pension", "tax return", "savings account", "inflation"],
}
FRAMES = [
    "I read an article about the {thing} this morning.",
    "Everyone at work keeps talking about the {thing}.",
    "The {thing} was in the news again today.",
    "My neighbour asked me what I think of the {thing}.",
    "There is a long discussion online about the {thing}.",
    "We spent the evening arguing about the {thing}.",
    "Has anyone else noticed the {thing} lately?",
    "A friend sent me a video about the {thing}.",
]
EXTRAS = ["", " Really interesting.", " Not sure what to think.", " Worth a look.", " It surprised me."]


def topic_rows(n: int = 1034, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    names = sorted(TOPICS)
    rows = []
    seen: set[str] = set()
    while len(rows) < n:
        topic = names[len(rows) % len(names)]
        text = rng.choice(FRAMES).format(thing=rng.choice(TOPICS[topic])) + rng.choice(EXTRAS)
        text += f" ({rng.randint(1, 10_000)})"  # distinct texts: de-duplication would drop repeats
        if text not in seen:
            seen.add(text)
            rows.append({"id": f"topic-{len(rows)}", "text": text, "topic": topic})
    return rows


def write_topics(path: Path, n: int = 1034) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "topic"])
        writer.writeheader()
        writer.writerows(topic_rows(n))
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/external/topics.csv")
    print(write_topics(out, int(sys.argv[2]) if len(sys.argv) > 2 else 1034))
