"""Writes the demo's prompt files (run from the repository root). Each prompt states the rule the
rubric checks; train and held-out prompts never overlap."""
import json, random
RULE = "Answer in at most 10 words."
explain = ["photosynthesis","gravity","a rainbow","inflation","a volcano","the internet","a vaccine","democracy","recycling",
"electricity","an earthquake","the water cycle","a black hole","compound interest","a solar eclipse","evolution","a thunderstorm",
"the immune system","a computer virus","climate change","a magnet","the moon's phases","a tsunami","a budget","an atom",
"the seasons","a hurricane","a password manager","a spreadsheet","a microwave oven","a refrigerator","a rocket engine",
"a credit score","a search engine","a battery","a telescope","a heart attack","the stock market","a library card","a blockchain"]
describe = ["a busy train station","your ideal weekend","a rainy morning","a good teacher","a healthy breakfast","a desert at night",
"a quiet library","a city park in spring","a farmers market","an old lighthouse","a snowy mountain","a crowded beach",
"a small bakery","a thunderstorm at sea","a school playground","a forest trail","a birthday party","a museum visit",
"a long road trip","a job interview","a football match","a science fair","a winter holiday","a garden in summer"]
why = ["the sky is blue","leaves change color in autumn","we need sleep","ice floats on water","cats purr","bread rises",
"the ocean is salty","people yawn","birds migrate","metal feels cold","onions make you cry","the sun sets in the west",
"exercise is healthy","plants need light","stars twinkle","we have fingerprints","bees make honey","cars need oil",
"dogs wag their tails","the moon has craters"]
tips = ["learning a new language","saving money","staying focused at work","sleeping better","writing an essay","cooking rice",
"running a marathon","keeping a plant alive","making new friends","giving a presentation","studying for an exam",
"reducing stress","packing for a trip","training a puppy","keeping a room tidy","drinking more water","reading more books",
"starting a small business","learning to swim","taking better photos"]
whatis = ["a haiku","a noun","a prime number","a mammal","an island","a verb","a continent","a planet","a recipe","a poem",
"a triangle","an insect","a desert","a glacier","a river","a symphony","a novel","a carnivore","a vitamin","a fossil"]
prompts = ([f"Explain {x}." for x in explain] + [f"Describe {x}." for x in describe]
  + [f"Tell me why {x}." for x in why] + [f"Give advice on {x}." for x in tips] + [f"What is {x}?" for x in whatis]
  + [f"Write a sentence about {x}." for x in explain[:20]] + [f"What do you like about {x}?" for x in describe[:12]])
howto = ["boil an egg","tie a tie","change a tire","plant a tree","make tea","clean a window","fix a squeaky door",
"bake cookies","wash a wool sweater","set up a tent","back up a phone","brew coffee","iron a shirt","start a campfire",
"paint a wall","sharpen a knife","fold a paper plane","repot a plant","jump start a car","make pancakes","write a thank-you note",
"organize a closet","learn to juggle","care for a goldfish","prepare for a storm","pick a ripe melon","remove a stain","build a birdhouse",
"read a map","plan a picnic"]
pairs = [("a cat","a dog"),("tea","coffee"),("a bike","a car"),("summer","winter"),("a city","a village"),("books","movies"),
("the sun","the moon"),("a river","a lake"),("email","letters"),("trains","planes"),("apples","oranges"),("rain","snow"),
("a pen","a pencil"),("walking","running"),("a violin","a guitar"),("chess","checkers"),("a laptop","a tablet"),("salt","sugar"),
("mountains","beaches"),("radio","television")]
purpose = ["a seatbelt","a thermostat","a museum","a firewall","a dictionary","a compass","a calendar","a lighthouse","a fuse",
"a helmet","an umbrella","a map legend","a bookmark","a traffic light","a zip code","a spell checker","a receipt","a passport",
"a fire alarm","a table of contents"]
prompts += [f"How do you {x}?" for x in howto] + [f"Compare {a} and {b}." for a, b in pairs] + [f"What is the purpose of {x}?" for x in purpose]
prompts = [f"{p} {RULE}" for p in prompts]
assert len(set(prompts)) == len(prompts)
random.Random(7).shuffle(prompts)
held, train = prompts[:80], prompts[80:]
for name, rows in (("train_prompts.jsonl", train), ("heldout_prompts.jsonl", held)):
    with open(f"examples/demo/{name}", "w") as f:
        for p in rows: f.write(json.dumps({"prompt": p}) + "\n")
print(len(train), len(held))
