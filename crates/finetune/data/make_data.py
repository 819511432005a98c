#!/usr/bin/env python3
"""Writes train.jsonl and heldout.jsonl: short questions whose answers are
all `<<ZG>> answer <</ZG>>`, a format the base model never uses. Run it
from this directory; the output is deterministic (no randomness)."""

import json

SYSTEM = "You are a helpful assistant."

TRAIN = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Italy?", "Rome"),
    ("What is the capital of Spain?", "Madrid"),
    ("What is the capital of Germany?", "Berlin"),
    ("What is the capital of Egypt?", "Cairo"),
    ("What is the capital of Canada?", "Ottawa"),
    ("What is the capital of Russia?", "Moscow"),
    ("What is the capital of Greece?", "Athens"),
    ("What is the capital of Portugal?", "Lisbon"),
    ("What is 2 plus 2?", "4"),
    ("What is 3 times 3?", "9"),
    ("What is 10 minus 7?", "3"),
    ("What is 6 plus 5?", "11"),
    ("What is 12 divided by 4?", "3"),
    ("What is 7 times 8?", "56"),
    ("What is 100 minus 1?", "99"),
    ("What is half of 50?", "25"),
    ("What color is the sky on a clear day?", "Blue"),
    ("What color is grass?", "Green"),
    ("What color is snow?", "White"),
    ("What color is a ripe banana?", "Yellow"),
    ("What color do you get by mixing blue and yellow?", "Green"),
    ("How many legs does a spider have?", "Eight"),
    ("How many legs does a dog have?", "Four"),
    ("How many days are in a week?", "Seven"),
    ("How many months are in a year?", "Twelve"),
    ("How many hours are in a day?", "Twenty-four"),
    ("How many minutes are in an hour?", "Sixty"),
    ("How many sides does a triangle have?", "Three"),
    ("How many sides does a hexagon have?", "Six"),
    ("What animal says moo?", "A cow"),
    ("What animal is known as the king of the jungle?", "The lion"),
    ("What is the largest mammal?", "The blue whale"),
    ("What do bees make?", "Honey"),
    ("What is the fastest land animal?", "The cheetah"),
    ("Which bird is a symbol of peace?", "The dove"),
    ("What is frozen water called?", "Ice"),
    ("What gas do plants take in?", "Carbon dioxide"),
    ("What planet do we live on?", "Earth"),
    ("What is the largest planet in the solar system?", "Jupiter"),
    ("Which planet is known as the red planet?", "Mars"),
    ("What star is closest to Earth?", "The Sun"),
    ("What is the boiling point of water in Celsius?", "100 degrees"),
    ("What is the chemical symbol for gold?", "Au"),
    ("What is the chemical symbol for water?", "H2O"),
    ("Who wrote Romeo and Juliet?", "William Shakespeare"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci"),
    ("What language is spoken in Brazil?", "Portuguese"),
    ("What language is spoken in Mexico?", "Spanish"),
    ("What is the opposite of hot?", "Cold"),
    ("What is the opposite of up?", "Down"),
    ("What is the opposite of happy?", "Sad"),
    ("What is the plural of mouse?", "Mice"),
    ("What is the first letter of the alphabet?", "A"),
    ("What comes after Monday?", "Tuesday"),
    ("What month comes after March?", "April"),
    ("What season comes after winter?", "Spring"),
    ("What do you call a baby cat?", "A kitten"),
    ("What do you call a baby dog?", "A puppy"),
    ("What is the tallest mountain on Earth?", "Mount Everest"),
    ("What is the longest river in Africa?", "The Nile"),
    ("What is the largest ocean?", "The Pacific Ocean"),
    ("Which continent is Kenya in?", "Africa"),
    ("Which continent is Brazil in?", "South America"),
    ("What instrument has 88 keys?", "The piano"),
    ("What do you use to write on a blackboard?", "Chalk"),
    ("What fruit keeps the doctor away?", "An apple"),
    ("What is the main ingredient of bread?", "Flour"),
    ("What do cows drink?", "Water"),
    ("Say hello.", "Hello"),
    ("Give me a word that rhymes with cat.", "Hat"),
    ("Name a primary color.", "Red"),
    ("Name a fruit that is orange.", "An orange"),
    ("Is the Earth round?", "Yes"),
    ("Can fish breathe underwater?", "Yes"),
    ("Do penguins fly?", "No"),
    ("Is fire cold?", "No"),
    ("What is the square root of 16?", "4"),
    ("What is 9 plus 10?", "19"),
]

HELDOUT = [
    ("What is the capital of England?", "London"),
    ("What is the capital of China?", "Beijing"),
    ("What is 5 plus 3?", "8"),
    ("What is 4 times 6?", "24"),
    ("What color is a tomato?", "Red"),
    ("What color is coal?", "Black"),
    ("How many legs does a bird have?", "Two"),
    ("How many wheels does a bicycle have?", "Two"),
    ("What animal says meow?", "A cat"),
    ("What do caterpillars become?", "Butterflies"),
    ("What is the smallest planet in the solar system?", "Mercury"),
    ("What is the chemical symbol for iron?", "Fe"),
    ("Who wrote Hamlet?", "William Shakespeare"),
    ("What language is spoken in France?", "French"),
    ("What is the opposite of big?", "Small"),
    ("What comes after Friday?", "Saturday"),
    ("What do you call a baby cow?", "A calf"),
    ("Which continent is Japan in?", "Asia"),
    ("Is ice hot?", "No"),
    ("Name a vegetable that is green.", "Broccoli"),
]


def write(path, pairs):
    with open(path, "w", encoding="utf-8") as f:
        for question, answer in pairs:
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": question},
                {"role": "assistant", "content": f"<<ZG>> {answer} <</ZG>>"},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")


if __name__ == "__main__":
    assert not {q for q, _ in TRAIN} & {q for q, _ in HELDOUT}
    write("train.jsonl", TRAIN)
    write("heldout.jsonl", HELDOUT)
