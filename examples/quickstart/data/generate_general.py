#!/usr/bin/env python3
"""Generate ``general.txt``: a small general-English pre-training corpus.

The corpus is composed from hand-written sentence templates and word lists
(animals, plants, fictional towns and people, sports results, recipes,
science explainers, travel notes, short stories ...).  Paragraphs are
separated by a blank line.  A fixed seed makes the output reproducible::

    python examples/quickstart/data/generate_general.py

The text deliberately never talks about customer support or software
products: that is the *domain* data set (see ``support_tickets.jsonl``).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

SEED = 20240611
TARGET_BYTES = 330_000
OUT = Path(__file__).with_name("general.txt")

R = random.Random(SEED)
_ALT = re.compile(r"\{([^{}]*)\}")
_SLOT = re.compile(r"\[(\w+)\]")


def fill(template: str, **ctx: object) -> str:
    """Replace ``[slot]`` with ctx values and ``{a|b|c}`` with a random choice."""

    def slot(m: re.Match[str]) -> str:
        v = ctx[m.group(1)]
        return str(v() if callable(v) else v)

    text = _SLOT.sub(slot, template)
    while True:
        new = _ALT.sub(lambda m: R.choice(m.group(1).split("|")), text)
        if new == text:
            break
        text = new
    text = re.sub(r"\s+", " ", text).strip()
    text = _ART.sub(_fix_article, text)
    return text[0].upper() + text[1:]


_ART = re.compile(r"\b([Aa])n? (?=([A-Za-z]+))")


def _fix_article(m: re.Match[str]) -> str:
    word = m.group(2).lower()
    vowel = word[0] in "aeiou"
    if word.startswith(("uni", "use", "eu", "one")):
        vowel = False
    if word.startswith(("hour", "honest")):
        vowel = True
    return m.group(1) + ("n " if vowel else " ")


def an(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def pick(seq, k: int | None = None):
    if k is None:
        return R.choice(seq)
    return R.sample(seq, k)


def some(seq, lo: int, hi: int) -> list:
    """A random subset of seq (size lo..hi) that keeps the original order."""
    k = R.randint(lo, min(hi, len(seq)))
    idx = sorted(R.sample(range(len(seq)), k))
    return [seq[i] for i in idx]


def paragraph(sentences: list[str]) -> str:
    return " ".join(s if s.endswith((".", "!", "?", '"')) else s + "." for s in sentences)


# ---------------------------------------------------------------------------
# Shared word lists
# ---------------------------------------------------------------------------

TOWN_A = ["Ash", "Bel", "Cor", "Dun", "Elm", "Fair", "Glen", "Hal", "Ivy", "Kings",
          "Lark", "Mar", "North", "Oak", "Pen", "Red", "Stan", "Thorn", "Wes", "Wil",
          "Bram", "Cold", "Fern", "Gold", "Hazel", "Long", "Mill", "Rose", "Silver", "Stone"]
TOWN_B = ["bridge", "ford", "haven", "mouth", "wick", "field", "ton", "ley", "brook",
          "stead", "moor", "port", "dale", "by", "well", "combe", "hurst", "minster"]
RIVERS = ["Alder", "Tamsin", "Wend", "Corrow", "Lisle", "Marrow", "Esk", "Fennick", "Hollin",
          "Brae", "Oundle", "Sorrel", "Teal", "Vail", "Kestle", "Arrow", "Lune", "Merrin"]
HILLS = ["the Greywater Hills", "the Caddon Fells", "the Harrow Downs", "the Blue Ridge of Mora",
         "the Westmarch Uplands", "the Tarn Mountains", "the Hollow Peaks", "the Sallow Moors",
         "the Brackenfold Hills", "the Iron Crags"]
REGIONS = ["the northern valleys", "a wide coastal plain", "the chalk downs of the south",
           "the lake country", "the high plateau", "the river lowlands", "the western islands",
           "the forested borderlands", "the eastern marshes", "the rolling farmland of the interior"]
CENTURIES = ["twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
             "eighteenth", "nineteenth"]
FEMALE = ["Clara", "Maya", "Ruth", "Elena", "Nora", "Ada", "Lucy", "Hannah", "Irene", "Sofia",
          "Martha", "Ines", "Priya", "Greta", "Alice", "June", "Tessa", "Lena", "Rosa", "Ingrid",
          "Amara", "Beatrice", "Freya", "Helen", "Joanna", "Kira", "Leila", "Miriam", "Olive", "Zoe"]
MALE = ["Tom", "Daniel", "Oskar", "Samuel", "Arthur", "Felix", "Jonah", "Marco", "Peter", "Ravi",
        "Hugo", "Leon", "Elias", "Isaac", "Walter", "Victor", "Callum", "Diego", "Frank", "George",
        "Henry", "Ivan", "Joseph", "Kofi", "Luca", "Milo", "Nathan", "Owen", "Rupert", "Theo"]
SURNAMES = ["Hartley", "Okafor", "Lindqvist", "Moreau", "Brennan", "Castillo", "Novak", "Fairbairn",
            "Ashworth", "Delacroix", "Kowalski", "Mendes", "Whitlock", "Sato", "Abernathy", "Quinn",
            "Rasmussen", "Ellery", "Thorne", "Vasquez", "Holloway", "Bishop", "Carver", "Drummond",
            "Everett", "Fielding", "Garrow", "Hale", "Ingram", "Jessop", "Kemp", "Lowell"]
SEASONS = ["spring", "summer", "autumn", "winter"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NUMWORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"]


def town() -> str:
    return R.choice(TOWN_A) + R.choice(TOWN_B)


def river() -> str:
    return "the " + R.choice(RIVERS)


def person():
    if R.random() < 0.5:
        return R.choice(FEMALE), R.choice(SURNAMES), ("she", "her", "her")
    return R.choice(MALE), R.choice(SURNAMES), ("he", "him", "his")


def year(lo: int = 1450, hi: int = 1990) -> int:
    return R.randint(lo, hi)


# ---------------------------------------------------------------------------
# Animals
# ---------------------------------------------------------------------------

ANIMALS = [
    ("red fox", "mammal", "woodland, farmland and even city parks", "much of the Northern Hemisphere",
     "small rodents, birds, insects and fallen fruit", "its bushy tail, which it wraps around its body for warmth"),
    ("barn owl", "bird", "open grassland and farmland", "nearly every continent",
     "voles, shrews and mice", "a pale, heart-shaped face that funnels sound toward its ears"),
    ("common frog", "amphibian", "ponds, ditches and damp meadows", "most of Europe",
     "insects, snails and worms", "spending the coldest months buried in mud at the bottom of a pond"),
    ("honeybee", "insect", "gardens, orchards and meadows", "almost every part of the world",
     "nectar and pollen", "a waggle dance that tells other workers where to find flowers"),
    ("gray wolf", "mammal", "forests, tundra and mountains", "North America, Europe and Asia",
     "deer, elk and smaller animals", "living and hunting in family groups called packs"),
    ("humpback whale", "marine mammal", "the open ocean", "all the major oceans",
     "krill and small schooling fish", "long, complex songs that males repeat for hours"),
    ("emperor penguin", "bird", "sea ice and the cold waters around it", "Antarctica",
     "fish, krill and squid", "fathers that keep the egg warm on their feet through the winter"),
    ("African elephant", "mammal", "savanna and forest", "sub-Saharan Africa",
     "grasses, leaves, bark and fruit", "a trunk that can lift a heavy log or pick a single berry"),
    ("monarch butterfly", "insect", "meadows and roadsides", "North America",
     "nectar, while its caterpillars eat only milkweed", "a migration that covers thousands of kilometers"),
    ("sea otter", "marine mammal", "kelp forests", "the coasts of the North Pacific",
     "sea urchins, crabs and clams", "using flat stones as tools to crack open shells"),
    ("hedgehog", "mammal", "hedgerows, gardens and woodland edges", "Europe",
     "beetles, worms and caterpillars", "rolling into a tight ball of spines when it is threatened"),
    ("peregrine falcon", "bird", "cliffs, coasts and tall city buildings", "every continent except Antarctica",
     "other birds caught in flight", "diving at more than three hundred kilometers per hour"),
    ("green sea turtle", "reptile", "warm coastal waters", "tropical and subtropical seas",
     "seagrass and algae", "returning to the beach where it hatched to lay its own eggs"),
    ("beaver", "mammal", "rivers, streams and lakes", "North America and northern Europe",
     "bark, twigs and water plants", "building dams that turn a stream into a pond"),
    ("octopus", "mollusk", "rocky reefs and sandy sea floors", "oceans around the world",
     "crabs, shrimp and clams", "changing the color and texture of its skin in less than a second"),
    ("snow leopard", "mammal", "high, rocky mountains", "Central Asia",
     "wild sheep and goats", "a long, thick tail that it uses for balance and wraps around its face like a scarf"),
    ("koala", "marsupial", "eucalyptus woodland", "eastern Australia",
     "eucalyptus leaves", "sleeping for up to twenty hours a day"),
    ("arctic tern", "seabird", "coasts and the open sea", "the Arctic and the Antarctic",
     "small fish and shrimp", "a yearly journey from one end of the planet to the other"),
    ("giant panda", "mammal", "cool bamboo forests", "the mountains of central China",
     "bamboo shoots and leaves", "a thumb-like wrist bone that helps it grip bamboo stems"),
    ("Atlantic salmon", "fish", "rivers and the open sea", "the North Atlantic",
     "insects, shrimp and smaller fish", "swimming upstream to spawn in the river where it was born"),
    ("chameleon", "reptile", "rainforests and dry scrub", "Africa and Madagascar",
     "insects", "eyes that can move independently of each other"),
    ("bottlenose dolphin", "marine mammal", "warm and temperate seas", "coasts around the world",
     "fish and squid", "signature whistles that work almost like names"),
    ("badger", "mammal", "woodland and pasture", "Europe and western Asia",
     "earthworms, roots and bulbs", "digging large underground homes called setts"),
    ("kingfisher", "bird", "slow rivers and lakes", "Europe, Asia and North Africa",
     "small fish", "a bright blue back and a dagger-shaped bill"),
    ("camel", "mammal", "deserts and dry grassland", "North Africa, the Middle East and Central Asia",
     "dry grasses and thorny plants", "going for days without drinking water"),
    ("firefly", "beetle", "meadows, marshes and forest edges", "temperate and tropical regions",
     "nectar and pollen", "producing a cold light to attract a mate"),
    ("moose", "mammal", "northern forests and wetlands", "North America, Scandinavia and Russia",
     "willow, birch and water plants", "broad antlers that can span more than a meter and a half"),
    ("wandering albatross", "seabird", "the open ocean", "the Southern Ocean",
     "squid and fish", "gliding for hours on the widest wings of any living bird"),
    ("red squirrel", "rodent", "conifer and mixed forests", "Europe and northern Asia",
     "seeds, nuts and fungi", "burying food in autumn and finding much of it again months later"),
    ("Nile crocodile", "reptile", "rivers, lakes and swamps", "much of Africa",
     "fish, birds and mammals", "a bite that is among the strongest in the animal kingdom"),
    ("puffin", "seabird", "rocky islands and cold seas", "the North Atlantic",
     "sand eels and small fish", "a bright striped bill that it sheds after the breeding season"),
    ("orangutan", "ape", "tropical rainforest", "Borneo and Sumatra",
     "fruit, leaves and bark", "building a fresh sleeping nest of branches almost every night"),
]

ANIMAL_T = [
    "The [name] is {a|a familiar|a well-known|a widespread} [cls] {found in|that lives in|at home in} [habitat]. {Its range covers|It can be found across|It occurs throughout} [region]",
    "{Its diet consists mainly of|It feeds mostly on|It lives chiefly on} [diet]",
    "{The animal is best known for|Naturalists often mention|What sets it apart is} [trait]",
    "{Young|Juvenile} [plural] {stay close to their parents for the first months of life|learn by watching the adults around them|are most at risk during their first year}",
    "{In [season]|During the [season] months}, [plural] {become more active|are easier to spot|change their daily routine} as {food becomes more plentiful|the days grow longer|the weather shifts}",
    "A study carried out near [town] over [num] years found that {local|the resident} [plural] {had adapted well to the presence of people|moved their range several kilometers to the north|raised more young in mild years}",
    "{Loss of habitat|Pollution|A changing climate} {remains the biggest threat to|has put pressure on} [plural] in some areas, although {protected reserves have|careful management has} helped numbers recover",
    "{Early naturalists|Old farming almanacs|Village storytellers} {described|wrote about|told tales of} the [name] {with a mixture of respect and curiosity|as a sign of the changing seasons|long before anyone studied it properly}",
    "{Anyone hoping to see|Visitors who want to watch} [an_name] {in the wild|in its natural setting} {should go early in the morning|need patience and a good pair of binoculars|are advised to keep a respectful distance}",
    "Like many [cls]s, the [name] {plays an important part in|helps to shape} the {wider ecosystem|food web|landscape} around it",
    "{Scientists|Field biologists|Researchers} still {do not fully understand|are debating|are learning more about} how [plural] {find their way over long distances|communicate with one another|choose where to raise their young}",
    "In [town], {a small museum|the local school|a group of volunteers} {keeps records of|counts|photographs} every [name] {seen in the district|spotted along [river]|reported by walkers}",
    "{A healthy adult|A full-grown [name]} can live for {many|several|more than [num]} years {in good conditions|if it escapes predators|in the wild}",
]


def plural(name: str) -> str:
    irregular = {"octopus": "octopuses", "moose": "moose", "Atlantic salmon": "salmon", "firefly": "fireflies",
                 "red fox": "red foxes", "gray wolf": "gray wolves", "puffin": "puffins"}
    if name in irregular:
        return irregular[name]
    return name + ("es" if name.endswith(("s", "sh", "ch")) else "s")


LOCAL_ANIMALS = {"red fox", "barn owl", "common frog", "honeybee", "hedgehog", "peregrine falcon", "beaver",
                 "badger", "kingfisher", "firefly", "red squirrel", "puffin", "Atlantic salmon"}


def animal_paragraph(entry) -> str:
    name, cls, habitat, region, diet, trait = entry
    templates = ANIMAL_T[1:]
    if name not in LOCAL_ANIMALS:
        templates = [t.replace("near [town]", "in [region]") for t in templates if "In [town]" not in t]
    ctx = dict(name=name, cls=cls, habitat=habitat, region=region, diet=diet, trait=trait,
               plural=plural(name), an_name=an(name), season=lambda: pick(SEASONS), town=town,
               num=lambda: pick(NUMWORDS), river=river)
    first = fill(ANIMAL_T[0], **ctx)
    rest = some(templates, 3, 5)
    return paragraph([first] + [fill(t, **ctx) for t in rest])


# ---------------------------------------------------------------------------
# Plants and trees
# ---------------------------------------------------------------------------

PLANTS = [
    ("oak", "tree", "acorns", "strong, slow-growing timber that was once used for ships and barns", "hundreds of years"),
    ("silver birch", "tree", "tiny winged seeds", "white, papery bark that peels in thin strips", "about a century"),
    ("sunflower", "flower", "large heads of oily seeds", "a flower head that follows the sun while it is young", "a single season"),
    ("lavender", "shrub", "small purple flower spikes", "a calming scent that has been used in soaps for centuries", "fifteen years or more"),
    ("bamboo", "grass", "woody stems", "growing faster than almost any other plant", "decades"),
    ("apple tree", "fruit tree", "crisp fruit in late summer and autumn", "blossom that feeds bees early in the year", "fifty to eighty years"),
    ("foxglove", "flower", "tall spikes of bell-shaped flowers", "leaves that are poisonous but gave doctors an early heart medicine", "two years"),
    ("maple", "tree", "winged seeds that spin as they fall", "leaves that turn red and gold in autumn", "two or three centuries"),
    ("wild garlic", "herb", "starry white flowers", "broad leaves with a strong smell that fills damp woods in spring", "many years"),
    ("cactus", "succulent", "bright flowers after rain", "thick stems that store water through long dry spells", "decades"),
    ("water lily", "aquatic plant", "floating flowers", "round leaves that rest flat on the surface of still water", "many years"),
    ("rosemary", "herb", "pale blue flowers", "needle-like leaves that cooks add to roasts and bread", "twenty years or more"),
    ("willow", "tree", "fluffy catkins", "flexible branches that basket makers have used for thousands of years", "seventy years or so"),
    ("heather", "shrub", "tiny pink and purple flowers", "covering whole hillsides in color at the end of summer", "around thirty years"),
    ("olive tree", "fruit tree", "small oily fruit", "silvery leaves and twisted trunks that can survive for a thousand years", "many centuries"),
    ("moss", "non-flowering plant", "spores", "soaking up rain like a sponge and slowly releasing it", "many years"),
    ("tomato plant", "vegetable plant", "red, yellow or striped fruit", "a sharp green smell on its leaves and stems", "one season"),
    ("holly", "shrub", "bright red berries", "glossy, prickly leaves that stay green all winter", "a century or more"),
    ("poppy", "flower", "papery red petals", "seeds that can wait in the soil for years until it is disturbed", "a single season"),
    ("chestnut tree", "tree", "glossy brown nuts in spiky cases", "wide, spreading branches that give deep shade", "several hundred years"),
]

PLANT_T = [
    "The [name] is {a|a common|a much-loved} [kind] that produces [fruit]",
    "{It is known for|Gardeners value it for|People have long admired it for} [trait]",
    "{Under good conditions|In a sheltered spot|With enough light and water}, it can live for [life]",
    "{It grows best in|It prefers|It does well in} {well-drained soil and full sun|cool, damp ground|sheltered places out of the wind|poor, stony soil where other plants struggle}",
    "In [town], {an old|a famous|a much-photographed} [name] {stands beside the church|grows in the market square|leans over [river]} and {is said to be|is thought to be|is probably} more than [num] hundred years old",
    "{Bees|Butterflies|Birds and insects} {visit it|depend on it|are drawn to it} {in large numbers|through the warmer months|whenever it is in flower}",
    "{Traditional remedies|Country recipes|Old herbals} {made use of|mention|recommend} the [name], {though not always wisely|often for coughs and colds|alongside many other plants}",
    "{Seeds|Cuttings|Young plants} {can be started|are best planted|should go into the ground} in [season], {ideally after the last frost|when the soil is still moist|once the ground has warmed}",
    "{Walkers|Painters|Children} {often notice|have long been fond of|remember} the [name] because of [trait]",
    "{A single|One healthy|A mature} [name] can {support|shelter|feed} {dozens of different insects|a surprising amount of wildlife|birds through the lean months}",
]


def plant_paragraph(entry) -> str:
    name, kind, fruit, trait, life = entry
    ctx = dict(name=name, kind=kind, fruit=fruit, trait=trait, life=life, town=town, river=river,
               num=lambda: pick(["two", "three", "four", "five"]), season=lambda: pick(SEASONS))
    first = fill(PLANT_T[0], **ctx)
    rest = some(PLANT_T[1:], 3, 5)
    return paragraph([first] + [fill(t, **ctx) for t in rest])


# ---------------------------------------------------------------------------
# Towns and local history (fictional places)
# ---------------------------------------------------------------------------

TOWN_KIND = ["market", "fishing", "mill", "cathedral", "mining", "harbor", "border", "university", "spa", "railway"]
TOWN_ORIGIN = ["a ford where drovers crossed with their cattle", "a small monastery", "a Roman road station",
               "a ferry crossing", "a weekly sheep market", "a natural harbor", "a spring said to cure fevers",
               "a crossroads inn", "a watermill on a fast stream", "a castle built to guard the valley"]
TOWN_FEATURE = ["a covered market hall", "a narrow stone bridge with five arches", "a clock tower",
                "a long promenade", "steep cobbled lanes", "a botanical garden", "a busy quay",
                "timber-framed houses leaning over the street", "a public library in a former corn exchange",
                "a park laid out along the old city walls", "a lighthouse at the end of the breakwater",
                "a square lined with lime trees"]
TOWN_T = [
    "[t] is {a small|a quiet|a lively|an old} [kind] town {on|beside|near} [river] in [region]",
    "{It grew up around|The settlement began as|Its history starts with} [origin] {in the [cent] century|some time in the [cent] century|during the [cent] century}",
    "{Today|These days|Nowadays} {around|about|roughly} [pop] people live there, {and many of them work in|most of them employed in|with a good share working in} {farming and food processing|tourism and hospitality|the hospital and the schools|small workshops and offices|local shops and markets}",
    "{Visitors|Most visitors|People passing through} {come to see|usually head straight for|tend to remember} [feature]",
    "{The town is also known for|It is also famous for|Locals are proud of} {its cheese|its autumn fair|its brass band|its cider|its rowing club|a long-running folk festival|its pottery|a bakery that has stood on the same corner for generations}",
    "{A railway line reached|The first paved road reached|A canal was cut to} [t] in [y], {which changed the place almost overnight|bringing new trade and new residents|although the town grew more slowly than its neighbors}",
    "{The oldest building|The most striking building|The best-known landmark} is {a church with a crooked spire|the old guildhall|a former wool warehouse|a round tower from the town's first walls}, {restored|repaired|rebuilt} after {a fire in [y]|a storm in [y]|years of neglect}",
    "{Every [month]|Each year in [month]|On the first weekend of [month]}, the {main street|market square|riverbank} fills with {stalls, music and food|boats, flags and spectators|farmers showing their animals}",
    "{Walkers|Cyclists|Families} use [t] as a base for exploring [hills], which {rise just to the north|can be seen from the market square|are less than an hour away}",
    "{Like many places in [region],|As with other towns in the area,} [t] {lost many young people to the cities|struggled when the mills closed|went through hard times} in the {last century|years after the war|nineteen-eighties}, but {has recovered|is now growing again|has found new life}",
]


def town_paragraph() -> str:
    t = town()
    ctx = dict(t=t, kind=lambda: pick(TOWN_KIND), river=river, region=lambda: pick(REGIONS),
               origin=lambda: pick(TOWN_ORIGIN), cent=lambda: pick(CENTURIES),
               pop=lambda: f"{R.randint(3, 95) * 1000 + R.choice([0, 200, 500, 800]):,}",
               feature=lambda: pick(TOWN_FEATURE), y=lambda: year(1780, 1960), month=lambda: pick(MONTHS),
               hills=lambda: pick(HILLS))
    first = fill(TOWN_T[0], **ctx)
    rest = some(TOWN_T[1:], 3, 5)
    return paragraph([first] + [fill(s, **ctx) for s in rest])


HIST_PROJECTS = [
    "the merchants of [t] paid for a stone bridge across [river]",
    "the council of [t] opened its first public school",
    "the weavers of [t] went on strike for better pay",
    "a new harbor wall was finished at [t] after nine years of work",
    "the people of [t] built a hospital with money raised from a lottery",
    "a band of engineers drained the marshes west of [t]",
    "the first printing press arrived in [t]",
    "a long quarrel between [t] and its neighbor over grazing rights was finally settled",
    "the bishop granted [t] the right to hold a yearly fair",
    "the townspeople of [t] dug a canal to carry coal to the river",
]
HIST_DISASTERS = [
    "a great flood swept away the lower town of [t]",
    "a fire that started in a bakery destroyed much of [t]",
    "a hard winter froze [river] solid for six weeks and cut [t] off from its markets",
    "a storm tore the roofs from half the houses in [t]",
    "a fever spread through the crowded streets of [t]",
    "the harvest failed around [t] for the second year in a row",
]
HIST_COMMON_A = [
    "{Records from the time|Letters that survive from that year|The town chronicles} {describe|mention|tell of} [detail]",
]
HIST_PROJECT_T = [
    "{At first|In the beginning|For several months}, {few people|hardly anyone|only a handful of families} {believed the plan would work|paid much attention|supported the idea}",
    "{The work was led by|The effort was organized by|Much of the credit goes to} [p], {a|an} {carpenter|schoolteacher|doctor|wool merchant|engineer|widowed innkeeper} who {kept careful notes|later became mayor|refused any reward}",
    "{Within a generation|Over the next twenty years|By the end of the century}, {the population doubled|trade along [river] grew steadily|the town was almost unrecognizable}",
    "{Historians still argue about|It is not clear|No one is quite sure} {how much the change cost|who first suggested it|why it took so long}",
]
HIST_DISASTER_T = [
    "{Many families lost their homes|Dozens of families lost everything|The lower streets were left in ruins}, and {help arrived from neighboring villages|the church opened its doors to anyone in need|the market was closed for months}",
    "{The rebuilding was led by|Relief was organized by|Much of the credit for the recovery goes to} [p], {a|an} {carpenter|schoolteacher|doctor|wool merchant|engineer|widowed innkeeper} who {kept careful notes|later became mayor|refused any reward}",
    "{Within a generation|Over the next twenty years|By the end of the century}, {the town had recovered|new houses of brick replaced the old timber ones|the population was larger than before}",
    "{Historians still argue about|It is not clear|No one is quite sure} {how many people died|how the trouble began|why the warnings were ignored}",
]
HIST_COMMON_B = [
    "{A stone tablet|A painted sign|A small plaque} {near the church|on the old bridge|outside the library} still {marks|records|commemorates} the event",
    "{The episode|That year|The whole affair} {is remembered every [month] with a procession|appears in local songs and stories|is taught to every child in the district}",
    "{Some of the original documents|A few drawings from the period|Account books from the time} {are kept in the county archive|were found in an attic in [y2]|can be seen in the town museum}",
]
HIST_DETAILS = ["long queues for bread", "crowds gathering in the square", "heated meetings in the guildhall",
                "families leaving for the coast", "prayers said in every church", "bells rung through the night"]


def history_paragraph() -> str:
    t = town()
    first_name, surname, _ = person()
    ctx = dict(t=t, river=river, y=lambda: year(1300, 1900), y2=lambda: year(1920, 2015),
               p=f"{first_name} {surname}", month=lambda: pick(MONTHS), detail=lambda: pick(HIST_DETAILS))
    disaster = R.random() < 0.4
    event = fill(pick(HIST_DISASTERS if disaster else HIST_PROJECTS), **ctx)
    first = fill(f"In [y], {event[0].lower() + event[1:]}", **ctx)
    pool = HIST_COMMON_A + (HIST_DISASTER_T if disaster else HIST_PROJECT_T) + HIST_COMMON_B
    return paragraph([first] + [fill(x, **ctx) for x in some(pool, 3, 5)])


# ---------------------------------------------------------------------------
# Sports (fictional clubs and athletes)
# ---------------------------------------------------------------------------

CLUB_SUFFIX = ["Rovers", "United", "Athletic", "Wanderers", "City", "Rangers", "Albion", "Harriers"]
SPORTS = {
    "football": ("goal", "striker", "goalkeeper", "pitch", "half-time", lambda: (R.randint(0, 4), R.randint(0, 4))),
    "rugby": ("try", "fly-half", "full-back", "pitch", "half-time", lambda: (R.randint(6, 38), R.randint(6, 38))),
    "basketball": ("basket", "point guard", "center", "court", "the third quarter", lambda: (R.randint(68, 112), R.randint(68, 112))),
    "hockey": ("goal", "forward", "goalkeeper", "ice", "the second period", lambda: (R.randint(0, 6), R.randint(0, 6))),
    "netball": ("goal", "goal shooter", "goal keeper", "court", "the second quarter", lambda: (R.randint(35, 70), R.randint(35, 70))),
}
SPORT_T = [
    "{On a [weather] [weekday] {afternoon|evening}|In front of [crowd] supporters on [weekday]}, [home] [verb] [away] [score] in an [adj] [sport] match",
    "{The decisive|The winning|The most important} [point] came from [player], {a|the} {young|veteran|recently signed} [pos] who {had barely played all season|was making a first start|has been in fine form}",
    "{Before|Just after} [break], [away] {looked the stronger side|had the better chances|hit the post twice}, {but|yet} {could not make their pressure count|lost their rhythm|were let down by poor passing}",
    "[coach], who coaches [home], {said afterwards that|told reporters that|admitted that} {the team had ridden its luck|the players had shown real character|the [field] had made good play difficult}",
    "{The result|The win|The victory} {lifts|moves|takes} [home] {into third place|to the top of the table|clear of the relegation places} with [left] games left to play",
    "{Attendance has risen|Crowds have grown|Ticket sales have climbed} {steadily|sharply} at [home] since {the club moved to a new ground|a new coach arrived|the youth team won the county cup}",
    "[away] {will host|travel to face} {their local rivals|the league leaders|a newly promoted side} next [weekday], {hoping to put this defeat behind them|with several players returning from injury|and will need a better performance}",
    "{Supporters|Fans|Spectators} {sang through the final minutes|stayed long after the whistle|ran onto the [field] at the end} {to celebrate|in the rain|despite the cold}",
]
RACE_T = [
    "[runner] won the [dist] {race|event} at the [town] {games|open meeting|championships} on [weekday], finishing in [time]",
    "{It was|That was} {the fastest time in the district this year|a personal best by almost a second|a remarkable result after a winter of injury}",
    "{The early pace was set by|For most of the race the lead belonged to} [rival], {who faded badly|who held on for second place|who was caught on the final bend}",
    "[pr_cap] {trains|has trained} {six days a week|before work each morning|with a small club} {on a cinder track beside [river]|in the hills above [town]|under the guidance of a former champion}",
    "{After the race|Speaking afterwards|At the medal ceremony}, [runner_first] {thanked [pos_pr] family|said the wind had made the last lap hard|promised to aim for the national title next year}",
    "{Conditions were|The weather was} {cool and still, ideal for fast times|wet and blustery|unusually warm for the time of year}",
]


def sports_paragraph() -> str:
    if R.random() < 0.72:
        sport = pick(list(SPORTS))
        point, pos1, _pos2, field, brk, sc = SPORTS[sport]
        a, b = sc()
        if a == b:
            a += 1
        hi, lo = max(a, b), min(a, b)
        close = hi - lo <= {"football": 1, "hockey": 1, "rugby": 7}.get(sport, 8)
        verb = pick(["edged past", "beat", "held off", "narrowly beat"] if close else ["beat", "overcame", "swept aside", "comfortably beat"])
        adj = pick(["tense", "scrappy", "entertaining", "nervy", "hard-fought"] if close else ["one-sided", "entertaining", "lively", "comfortable"])
        h, aw = town(), town()
        while aw == h:
            aw = town()
        fn, sn, _ = person()
        cf, cs, _ = person()
        ctx = dict(weather=lambda: pick(["windy", "cold", "bright", "wet", "warm", "gray"]),
                   weekday=lambda: pick(WEEKDAYS), crowd=lambda: f"{R.randint(3, 40) * 100 + R.randint(0, 99):,}",
                   home=f"{h} {pick(CLUB_SUFFIX)}", away=f"{aw} {pick(CLUB_SUFFIX)}", score=f"{hi}-{lo}",
                   sport=sport, verb=verb, adj=adj, point=point, player=f"{fn} {sn}", pos=pos1, **{"break": brk},
                   coach=f"{cf} {cs}", field=field, left=lambda: pick(NUMWORDS))
        first = fill(SPORT_T[0], **ctx)
        rest = some(SPORT_T[1:], 3, 5)
        return paragraph([first] + [fill(s, **ctx) for s in rest])
    fn, sn, pr = person()
    rf, rs, _ = person()
    dist = pick(["800 meters", "1500 meters", "5000 meters", "10,000 meters", "400 meters", "3000 meters steeplechase"])
    ctx = dict(runner=f"{fn} {sn}", runner_first=fn, dist=dist, town=town, weekday=lambda: pick(WEEKDAYS),
               time=f"{R.randint(1, 29)} minutes {R.randint(1, 59)} seconds" if "meters" in dist and dist[0] != "4" else f"{R.randint(46, 58)}.{R.randint(10, 99)} seconds",
               rival=f"{rf} {rs}", pr_cap=pr[0].capitalize(), pos_pr=pr[2], river=river)
    first = fill(RACE_T[0], **ctx)
    rest = some(RACE_T[1:], 3, 4)
    return paragraph([first] + [fill(s, **ctx) for s in rest])


# ---------------------------------------------------------------------------
# Cooking
# ---------------------------------------------------------------------------

DISHES = [
    ("lentil soup", "red lentils, onion, carrot, garlic and a little cumin",
     ["soften the onion and carrot in olive oil", "stir in the garlic and cumin", "add the lentils and cover them with stock",
      "simmer for about twenty-five minutes until the lentils collapse", "season with salt, pepper and a squeeze of lemon"]),
    ("banana bread", "ripe bananas, flour, butter, sugar, eggs and baking soda",
     ["mash the bananas with a fork", "beat the butter and sugar until pale", "mix in the eggs one at a time",
      "fold in the flour and baking soda", "bake in a loaf tin for about an hour"]),
    ("tomato sauce", "tinned tomatoes, garlic, olive oil and fresh basil",
     ["warm the oil gently", "add sliced garlic and cook it until it just turns golden", "pour in the tomatoes and crush them with a spoon",
      "let the sauce bubble slowly for twenty minutes", "tear in the basil at the very end"]),
    ("omelet", "eggs, butter, salt and a handful of herbs",
     ["beat the eggs with a pinch of salt", "melt the butter in a hot pan", "pour in the eggs and stir quickly",
      "stop stirring as soon as the eggs begin to set", "fold the omelet over and slide it onto a warm plate"]),
    ("vegetable curry", "onions, ginger, garlic, spices, coconut milk and seasonal vegetables",
     ["fry the onions slowly until deep brown", "add the ginger, garlic and spices and cook them for a minute",
      "stir in the vegetables", "pour in the coconut milk and simmer until everything is tender", "finish with fresh coriander"]),
    ("pancakes", "flour, milk, eggs and a pinch of salt",
     ["whisk the flour, eggs and milk into a smooth batter", "let the batter rest for half an hour", "heat a lightly oiled pan",
      "pour in a thin layer of batter and tilt the pan", "flip the pancake when the edges lift"]),
    ("roast chicken", "a whole chicken, lemon, garlic, thyme and butter",
     ["rub the skin with soft butter", "push lemon halves and garlic into the cavity", "roast in a hot oven",
      "baste the bird every twenty minutes", "let it rest before carving"]),
    ("flatbread", "flour, water, yogurt, salt and a little oil",
     ["mix the flour, yogurt and salt into a soft dough", "knead it for a few minutes", "divide it into small balls",
      "roll each ball thinly", "cook each bread in a dry, very hot pan until it puffs"]),
    ("apple crumble", "apples, sugar, cinnamon, flour, butter and oats",
     ["slice the apples and toss them with sugar and cinnamon", "rub the butter into the flour", "stir in the oats",
      "scatter the crumble over the fruit", "bake until the top is golden and the juices bubble"]),
    ("risotto", "rice, onion, white wine, stock, butter and parmesan",
     ["soften the onion in butter", "stir in the rice until every grain is coated", "add a splash of wine",
      "ladle in hot stock a little at a time, stirring often", "beat in butter and cheese at the end"]),
    ("fish stew", "white fish, mussels, fennel, tomatoes, garlic and saffron",
     ["cook the fennel and garlic in olive oil", "add the tomatoes and saffron", "simmer the broth for fifteen minutes",
      "lay the fish and mussels on top", "cover the pot until the mussels open"]),
    ("potato salad", "waxy potatoes, spring onions, mustard, vinegar and herbs",
     ["boil the potatoes in their skins", "slice them while still warm", "dress them with mustard and vinegar",
      "add chopped spring onions and herbs", "leave the salad to stand for an hour before serving"]),
]
COOK_T_INTRO = [
    "{A good|A simple|A reliable} [dish] {needs only|is made from|calls for} [ingr]",
    "{Few dishes are as comforting as|Many families have their own version of|Home cooks have always loved} [dish], {and the basic method is easy to learn|which is cheap to make and hard to get wrong|and it rewards a little patience}",
    "{If you have never made|For anyone trying} [dish] {before|for the first time}, {start with|gather} [ingr]",
]
COOK_T_TIP = [
    "{An experienced cook|A good cook|My grandmother} {would say|will tell you|always said} that {the secret is not to rush|the quality of the ingredients matters more than the recipe|tasting as you go is the most important step}",
    "{It keeps well in the fridge for a couple of days|Leftovers taste even better the next day|It freezes well for up to a month}",
    "{Serve it|It is best served} {with crusty bread|with a green salad|straight from the pot|while it is still warm}",
    "{In [town], cooks add|Some people in the south add|A popular variation adds} {a spoonful of honey|a handful of chopped walnuts|a little smoked paprika|grated orange zest|a splash of cream}",
    "{For a lighter version|To make it go further|If you are cooking for children}, {use less butter|add more vegetables|leave out the spices}",
    "{The dish|This recipe} {dates back|goes back} {at least to the [cent] century|generations|to farmhouse kitchens where nothing was wasted}",
]


def cooking_paragraph(dish) -> str:
    name, ingr, steps = dish
    ctx = dict(dish=name, ingr=ingr, town=town, cent=lambda: pick(CENTURIES[3:]))
    s = [fill(pick(COOK_T_INTRO), **ctx)]
    joiners = ["First,", "Then", "Next,", "After that,", "Finally,"]
    k = R.randint(3, len(steps))
    chosen = sorted(R.sample(range(len(steps)), k))
    for i, idx in enumerate(chosen):
        j = joiners[0] if i == 0 else (joiners[-1] if i == k - 1 else R.choice(joiners[1:4]))
        s.append(f"{j} {steps[idx]}")
    s.extend(fill(t, **ctx) for t in pick(COOK_T_TIP, R.randint(1, 3)))
    return paragraph([x[0].upper() + x[1:] for x in s])


# ---------------------------------------------------------------------------
# Science explainers (hand-written, one paragraph each)
# ---------------------------------------------------------------------------

SCIENCE = [
    ["Rainbows form when sunlight passes through raindrops.", "Each drop bends the light as it enters, reflects it off the back of the drop, and bends it again as it leaves.",
     "Because different colors bend by slightly different amounts, the white light spreads out into a band of colors.",
     "You can only see a rainbow when the sun is behind you and the rain is in front of you.", "A second, fainter bow sometimes appears outside the first, with its colors in reverse order."],
    ["Tides are caused mainly by the pull of the Moon on the oceans.", "The water on the side of the Earth facing the Moon is pulled toward it, and a second bulge forms on the opposite side.",
     "As the Earth turns, most coasts pass through both bulges each day, which is why there are usually two high tides.",
     "When the Sun and Moon line up, their pull combines and produces especially high spring tides.", "The shape of a coastline can make the difference between high and low water very large in some bays."],
    ["Photosynthesis is the process plants use to turn light into food.", "Inside their leaves, green pigment called chlorophyll captures energy from sunlight.",
     "The plant uses that energy to combine water from the soil with carbon dioxide from the air, making sugar and releasing oxygen.",
     "Almost every living thing depends on this process, directly or indirectly.", "It is also the reason forests and oceans matter so much for the air we breathe."],
    ["Thunder is the sound made by lightning.", "A lightning bolt heats the air around it to temperatures hotter than the surface of the Sun in a fraction of a second.",
     "The air expands so quickly that it creates a shock wave, which we hear as a crack or a long rumble.",
     "Because light travels much faster than sound, we see the flash before we hear the thunder.", "Counting the seconds between the two and dividing by three gives a rough distance in kilometers."],
    ["The seasons are caused by the tilt of the Earth, not by its distance from the Sun.", "For part of the year one hemisphere leans toward the Sun and receives more direct light and longer days.",
     "Six months later the same hemisphere leans away, and the days become short and cold.", "Near the equator the change is small, so the seasons there are marked more by rain than by temperature.",
     "Near the poles the effect is extreme, with weeks of constant daylight in summer and darkness in winter."],
    ["Volcanoes form where molten rock from deep inside the Earth reaches the surface.", "Many of them sit along the edges of the great plates that make up the planet's crust.",
     "Some erupt explosively, throwing ash high into the sky, while others release slow rivers of lava.",
     "Volcanic soil is often very fertile, which is why farms are sometimes found on the slopes of active volcanoes.", "Scientists watch for small earthquakes and changes in gas to predict when an eruption might happen."],
    ["Sound is a vibration that travels through air, water or solid materials.", "When a guitar string moves, it pushes the air around it and creates waves of higher and lower pressure.",
     "Our ears turn those waves into signals that the brain understands as sound.", "Sound travels about four times faster in water than in air, and faster still through steel.",
     "In the vacuum of space there is nothing to carry the vibration, so there is no sound at all."],
    ["Bread rises because of yeast, a tiny living fungus.", "When yeast feeds on the sugars in flour, it gives off bubbles of carbon dioxide.",
     "Kneading builds a stretchy network of gluten that traps those bubbles, so the dough swells.", "In the heat of the oven the bubbles expand one last time before the crust sets.",
     "Sourdough bakers use wild yeasts and bacteria, which also give the bread its gentle sour taste."],
    ["The Moon does not make its own light.", "What we see is sunlight reflected from its gray, dusty surface.",
     "As the Moon travels around the Earth, we see different amounts of its sunlit side, which gives us the phases from new moon to full moon.",
     "The same side of the Moon always faces the Earth because it turns once on its axis for every trip around the planet.", "A full cycle of phases takes a little under thirty days."],
    ["Glaciers are rivers of ice that move slowly downhill under their own weight.", "They form where more snow falls in winter than melts in summer, year after year.",
     "As the snow piles up, the lower layers are pressed into dense blue ice.", "Over thousands of years glaciers carve deep U-shaped valleys and leave behind piles of rock and gravel.",
     "Many of the lakes in mountain regions were scooped out by ice that has long since melted."],
    ["Magnets attract iron because of the way tiny regions inside the metal line up.", "Each region behaves like a little magnet, and in a magnetized piece most of them point the same way.",
     "The Earth itself acts like a giant magnet, which is why a compass needle points north.", "Heating a magnet strongly or dropping it repeatedly can scramble the regions and weaken it.",
     "Electric motors, speakers and many toys rely on the push and pull between magnets."],
    ["Clouds are made of countless tiny droplets of water or crystals of ice.", "They form when warm, moist air rises and cools until the water vapor in it condenses.",
     "Flat layers of cloud usually mean steady weather, while tall, towering clouds can bring heavy showers and thunder.",
     "The droplets are so small that they float on the rising air until they join together and become heavy enough to fall as rain.", "Fog is simply a cloud that has formed at ground level."],
    ["Fossils are the remains or traces of living things preserved in rock.", "Most form when a plant or animal is buried quickly in mud or sand, before it can rot away.",
     "Over long periods minerals slowly replace the original material, turning bone or wood into stone.", "Footprints, burrows and even leaf shapes can also be preserved.",
     "By studying the layers in which fossils are found, scientists can work out the order in which life changed over time."],
    ["The heart is a muscle about the size of a fist.", "It pumps blood through the body in two loops: one to the lungs, where the blood picks up oxygen, and one to everything else.",
     "Valves inside the heart keep the blood flowing in the right direction.", "At rest, an adult heart beats around sixty to eighty times a minute.",
     "Regular exercise makes the heart stronger, so it can pump more blood with each beat."],
    ["Stars shine because of nuclear fusion in their cores.", "Under enormous heat and pressure, light atoms such as hydrogen fuse into heavier ones and release energy.",
     "That energy slowly works its way out and escapes as light and heat.", "Small stars burn their fuel slowly and can shine for many billions of years.",
     "Very large stars live fast and may end their lives in huge explosions that scatter new elements into space."],
    ["Salt water freezes at a lower temperature than fresh water.", "The dissolved salt gets in the way of water molecules as they try to lock together into ice.",
     "This is why roads are salted in winter and why the sea rarely freezes except near the poles.",
     "When sea ice does form, much of the salt is pushed out, so old sea ice is surprisingly fresh.", "Cooks use the same effect when they make ice cream in a bucket of ice and salt."],
    ["Soil is far more than dirt.", "A single handful can contain millions of bacteria, fungi, tiny insects and worms.",
     "Together they break down dead leaves and roots and release the nutrients that plants need to grow.",
     "It can take hundreds of years for a few centimeters of good soil to form, but only a few storms to wash it away.", "Farmers protect soil by planting cover crops and leaving roots in the ground over winter."],
    ["Birds migrate to follow food and good weather.", "Many small songbirds travel at night, using the stars, the Earth's magnetic field and landmarks to find their way.",
     "Before the journey they eat heavily and can almost double their weight.", "Some species return to the same garden or hedge year after year.",
     "Ringing schemes, in which birds are fitted with tiny numbered bands, have taught scientists much of what we know about these journeys."],
    ["Rust forms when iron reacts with oxygen and water.", "The reddish flakes are weaker than the metal underneath and fall away, exposing fresh iron to attack.",
     "Salt speeds up the process, which is why cars and bridges near the sea rust quickly.", "Paint, oil and a coating of zinc can all keep water and air away from the metal.",
     "Stainless steel contains chromium, which forms a thin protective layer that heals itself when scratched."],
    ["Earthquakes happen when rocks deep underground suddenly slip past each other.", "Stress builds up slowly along faults for years or centuries and is then released in a few seconds.",
     "The energy travels outward as waves that shake the ground.", "Buildings designed to sway a little are much safer than rigid ones.",
     "Most earthquakes are too small to feel, and sensitive instruments record thousands of them every day."],
    ["Honey never really spoils.", "It contains very little water and is slightly acidic, so most bacteria cannot survive in it.",
     "Bees make it by collecting nectar, adding enzymes and fanning it with their wings until much of the water evaporates.",
     "The color and taste depend on the flowers the bees visited, from pale clover honey to dark heather honey.", "Honey that turns solid can be made runny again by warming the jar gently."],
    ["Coral reefs are built by tiny animals called polyps.", "Each polyp makes a hard cup of limestone, and over centuries millions of cups grow into great reefs.",
     "Many corals share their bodies with algae that provide food through photosynthesis and give the reef its color.",
     "When the water becomes too warm, the corals push the algae out and turn white, which is known as bleaching.", "Reefs cover a tiny part of the ocean floor but shelter a quarter of all marine species."],
    ["A lever lets a small force move a heavy load.", "It works by trading distance for strength: pushing the long end a long way moves the short end a short way with much more force.",
     "Seesaws, crowbars, scissors and wheelbarrows are all levers.", "The point on which the lever turns is called the fulcrum.",
     "The ancient Greek thinker Archimedes is said to have claimed that with a long enough lever he could move the world."],
    ["Sleep is not simply a time when the body switches off.", "During the night the brain passes through several stages, including deep sleep and the dreaming stage known as REM sleep.",
     "Deep sleep helps the body repair itself, while dreaming sleep seems to help with memory and mood.", "Most adults need between seven and nine hours a night, and teenagers need a little more.",
     "Bright screens late in the evening can delay the release of the hormone that makes us feel sleepy."],
    ["Wind is air moving from areas of high pressure to areas of low pressure.", "The Sun heats the ground unevenly, and warm air rises while cooler air rushes in to take its place.",
     "Near the coast this creates a sea breeze during the day and a land breeze at night.", "On a larger scale the spin of the Earth bends the winds into great curving patterns.",
     "Sailors relied on these steady winds for centuries to cross the oceans."],
    ["Compost turns kitchen and garden waste into rich, dark soil.", "Bacteria, fungi and worms do most of the work, breaking down peelings, leaves and grass cuttings.",
     "A good heap needs a mix of green material, which is rich in nitrogen, and brown material such as dry leaves or cardboard.",
     "Turning the heap lets in air and speeds things up.", "Finished compost smells sweet and earthy, like a forest floor after rain."],
]


def science_paragraph(idx: int) -> str:
    sents = SCIENCE[idx]
    k = R.randint(4, len(sents))
    keep = [0] + sorted(R.sample(range(1, len(sents)), k - 1))
    return " ".join(sents[i] for i in keep)


# ---------------------------------------------------------------------------
# Travel
# ---------------------------------------------------------------------------

TRAVEL_T = [
    "{The easiest way to reach|Most people get to|Travelers usually arrive in} [t] {is by train from the coast|is on the slow bus that winds up the valley|by ferry across [river]|by car along a narrow road through [hills]}",
    "{Spring and early autumn are|Late [season] is|The weeks around [month] are} the best time to visit, {when the paths are dry and the crowds are small|before the summer visitors arrive|when the orchards are in flower|when the hills turn gold}",
    "{Do not miss|Make time for|Be sure to visit} [feature], {especially early in the morning|which is free to enter|which is lit up after dark}",
    "{Local specialities include|The food here is simple and good, with|Restaurants in the old quarter serve} {smoked trout and rye bread|slow-cooked lamb with beans|fresh cheese and honey|fish soup and crusty bread|dumplings filled with mushrooms|apple cake and strong coffee}",
    "{A pleasant walk|A popular day trip|An easy outing} {follows [river] upstream to a ruined mill|climbs to a viewpoint above the town|leads through beech woods to a small lake|runs along the old railway line to the next village}",
    "{Accommodation ranges from|You can stay in} {a handful of family-run guesthouses|a youth hostel in a former school|farmhouses that rent out rooms|a grand old hotel on the square}, {so booking ahead is wise in summer|and prices are lower outside the holidays|most of them serving a generous breakfast}",
    "{The weather can change quickly|Evenings can be cool even in summer|Rain is common in the afternoons}, so {pack a warm layer|bring a waterproof jacket|plan outdoor trips for the morning}",
    "{Many visitors say|Travelers often remark|It is often said} that [t] {feels like a place where time has slowed down|is best explored on foot|is friendlier than the bigger towns nearby}",
    "{The market on [weekday] mornings|The small harbor at sunset|The view from the church tower} {is|remains} {the highlight for many|worth the trip on its own|something people photograph again and again}",
]


def travel_paragraph() -> str:
    t = town()
    ctx = dict(t=t, river=river, hills=lambda: pick(HILLS), season=lambda: pick(SEASONS),
               month=lambda: pick(MONTHS), feature=lambda: pick(TOWN_FEATURE), weekday=lambda: pick(WEEKDAYS))
    first = fill(TRAVEL_T[0], **ctx)
    rest = some(TRAVEL_T[1:], 3, 5)
    return paragraph([first] + [fill(s, **ctx) for s in rest])


# ---------------------------------------------------------------------------
# Short narratives
# ---------------------------------------------------------------------------

STORY_OPEN = [
    "[n] had lived in [t] for [num] years before [p] {first|finally|ever} {noticed the old boat|opened the locked shed|climbed the hill behind the house} at the end of the lane",
    "On a {cold|bright|misty|rainy} morning in [month], [n] {walked down to the harbor|set out along [river]|caught the early train} {with a letter in [pos] pocket|carrying a basket of apples|without telling anyone}",
    "{Nobody in [t] remembered exactly when|It was hard to say when} [n] {had started baking bread for the whole street|began repairing clocks in the back room|took over the little bookshop}",
    "When [n] was [num], [pos] {grandmother|uncle|neighbor} {gave [obj] a battered violin|taught [obj] to read the weather from the clouds|took [obj] fishing for the first time}",
    "[n] {arrived in [t] with a single suitcase|came back to [t] after many years away|moved to [t] to work at the mill} {one [season]|in the [season] of [y]|just before the harvest}",
]
STORY_MID = [
    "{At first|For a while|In those early days}, {the neighbors kept their distance|nothing seemed to go right|[p] felt like a stranger}",
    "{Every evening|Each morning|On [weekday]s}, [p] {sat by the window with a notebook|walked the long way round by the river|wrote a letter that [p] never sent}",
    "{One day|Late one afternoon|Some weeks later}, {a knock at the door|a sudden storm|an unexpected letter} changed everything",
    "[friend], {who ran the bakery|a retired teacher|the ferryman's daughter|a boy from the farm}, {began to visit|offered to help|asked a question that [n] could not answer}",
    "It took {several months|a long winter|most of the year}, but {slowly|little by little|step by step} the {garden|workshop|old house|boat} {came back to life|began to look like home|was ready}",
    "{There were setbacks|Not everything went to plan}: {the roof leaked|money ran short|the river flooded the lower field}, and {more than once|on some nights} [p] {thought about giving up|wondered why [p] had come}",
    "{The whole street|Half the town|A small crowd} {turned out|gathered|came by} {to watch|to help|with cakes and advice}",
]
STORY_END = [
    "{Years later|Long afterwards|Even now}, people in [t] still {talk about|remember|tell the story of} {that [season]|what [n] did|the day the boat was launched}",
    "{By the time|When} the {first snow|spring rains|harvest} came, [n] {no longer felt like a stranger|had made a friend for life|knew [p] was staying}",
    "{In the end|Finally|At last}, [n] {understood what [pos] grandmother had meant|realized the journey had been worth it|laughed, for the first time in a long while}",
    "{It was not a grand achievement|Nothing about it made the newspapers}, but {to [n] it meant everything|it changed the way [p] saw the town|it was enough}",
]


def story_paragraph() -> str:
    fn, _sn, (p, obj, pos) = person()
    fr, frs, _ = person()
    ctx = dict(n=fn, p=p, obj=obj, pos=pos, t=town(), river=river, month=lambda: pick(MONTHS),
               num=lambda: pick(NUMWORDS), season=lambda: pick(SEASONS), y=lambda: year(1890, 1995),
               weekday=lambda: pick(WEEKDAYS), friend=f"{fr} {frs}")
    s = [fill(pick(STORY_OPEN), **ctx)]
    s += [fill(t, **ctx) for t in some(STORY_MID, 2, 4)]
    s.append(fill(pick(STORY_END), **ctx))
    return paragraph(s)


# ---------------------------------------------------------------------------
# Landscapes and weather
# ---------------------------------------------------------------------------

LAND_T = [
    "[hills] {stretch|run|rise} {for some forty kilometers|along the edge of [region]|between [river] and the sea}, {a landscape of|a country of} {bare ridges and deep wooded valleys|heather moors and scattered farms|limestone cliffs and hidden caves}",
    "{The highest point|The summit of the range|The tallest hill} {reaches|stands at|rises to} about [h] meters and {is often wrapped in cloud|offers views across three counties|is marked by a stone cairn}",
    "{Snow lies on the tops|Frost lingers in the valleys|Mist settles over the rivers} {for much of the winter|well into [month]|on most autumn mornings}",
    "{Sheep farming|Forestry|Quarrying} {has shaped|once dominated|still shapes} the land, {and dry stone walls climb the slopes|leaving behind old tracks and ruined cottages|and many farms have been in the same family for generations}",
    "{Rivers such as|Streams that feed} [river] {start as springs high on the slopes|tumble through narrow gorges|carry peat-brown water down to the plains}",
    "{In [season]|Through the [season] months}, {the slopes are bright with|walkers find|the valleys fill with} {gorse and wild orchids|ripe bilberries|the calls of curlews and larks|the colors of turning leaves}",
    "{The weather here|Conditions on the tops} can {change within minutes|be far harsher than in the towns below|surprise even experienced walkers}, and {mountain rescue teams|local shepherds|park rangers} {advise visitors to carry a map and compass|warn against setting out late in the day|know every path by heart}",
    "{Archaeologists have found|There are traces of|Walkers sometimes stumble upon} {standing stones|the banks of iron-age forts|old mine workings|the foundations of shepherd huts} {on several summits|along the ridges|in the sheltered valleys}",
]
WEATHER_KINDS = {
    "wettest": ("rain fell without a break", "rivers burst their banks and water stood in the fields",
                "flooded meadows and cellars full of water", "a stalled band of low pressure"),
    "driest": ("the sun beat down on parched fields", "wells ran dry and crops withered",
               "cracked earth and dusty roads", "a stubborn area of high pressure"),
    "coldest": ("snow piled up against the doors", "the rivers froze and roads were blocked for days",
                "frozen wells and frost inside the windows", "a distant volcanic eruption"),
    "stormiest": ("gales tore across the coast", "boats stayed in harbor and trees came down across the roads",
                  "roofs stripped of their tiles and fallen chimneys", "an unusually active storm track over the ocean"),
}
WEATHER_T = [
    "{The [season] of [y]|That [season]|The year [y]} {was|is still remembered as} one of the [kind] {on record|in living memory|anyone in [region] could recall}",
    "{For weeks|Day after day|Through most of [month]}, [main]",
    "{In the villages|Across the district|On the farms}, [effect], {and prices rose in the markets|and many people stayed indoors|and schools closed for a time}",
    "{Weather diaries|Old newspapers|The records of a local vicar} {describe|mention|note} [detail]",
    "{When the weather finally broke|When it was over|By the following year}, {the land recovered quickly|it took years for some farms to recover|people were left with stories they told for decades}",
    "{Scientists|Meteorologists} {now think|believe|suspect} that [cause] {was partly to blame|may have played a part|explains much of what happened}",
]


def landscape_paragraph() -> str:
    ctx = dict(hills=pick(HILLS), region=lambda: pick(REGIONS), river=river, h=lambda: R.randint(4, 13) * 100 + R.randint(0, 99),
               month=lambda: pick(MONTHS), season=lambda: pick(SEASONS), y=lambda: year(1700, 1990))
    if R.random() < 0.55:
        first = fill(LAND_T[0], **ctx)
        rest = some(LAND_T[1:], 3, 5)
    else:
        kind = pick(list(WEATHER_KINDS))
        main, effect, detail, cause = WEATHER_KINDS[kind]
        ctx.update(kind=kind, main=main, effect=effect, detail=detail, cause=cause)
        if kind == "coldest":
            ctx.update(season="winter", month=lambda: pick(["December", "January", "February"]))
        elif kind == "driest":
            ctx.update(season="summer", month=lambda: pick(["June", "July", "August"]))
        first = fill(WEATHER_T[0], **ctx)
        rest = some(WEATHER_T[1:], 3, 4)
    return paragraph([first] + [fill(s, **ctx) for s in rest])


# ---------------------------------------------------------------------------
# Hobbies, crafts and the arts
# ---------------------------------------------------------------------------

HOBBIES = [
    ("knitting", "wool, a pair of needles and a simple pattern", "a scarf", "knitting circle"),
    ("woodworking", "a few sharp chisels, a saw and some seasoned timber", "a small stool", "workshop"),
    ("birdwatching", "a notebook, binoculars and a field guide", "a list of the birds in the local park", "birding club"),
    ("pottery", "clay, a wheel and access to a kiln", "a bowl", "pottery studio"),
    ("gardening", "a spade, a fork and a patch of ground", "a row of lettuces", "allotment society"),
    ("sketching", "a pencil, an eraser and a pocket sketchbook", "a drawing of a street corner", "drawing group"),
    ("choir singing", "nothing more than a willing voice", "a simple folk song", "community choir"),
    ("beekeeping", "a hive, a veil, gloves and a smoker", "a first jar of honey", "beekeepers' association"),
    ("chess", "a board, a set of pieces and a patient opponent", "a first tournament game", "chess club"),
    ("photography", "any camera and an eye for light", "a series of portraits", "camera club"),
    ("bread baking", "flour, water, salt, yeast and a hot oven", "a first loaf", "baking class"),
    ("sailing", "a small dinghy, a life jacket and calm water", "a trip across the bay", "sailing club"),
]
HOBBY_T = [
    "{Getting started with|Taking up|Learning} [h] {needs|requires} {little more than|only} [gear]",
    "{Most beginners|Newcomers|First-timers} {start by making|aim for|are pleased to manage} [first] {within a few weeks|in their first month|after a handful of sessions}",
    "{The [club] in [t]|A [club] that meets in [t]} {has around [num] members|meets every [weekday] evening|welcomes beginners of all ages}, and {experienced members are happy to share advice|tea and biscuits are always on offer|new faces appear every season}",
    "{People|Enthusiasts} {say|often say|will tell you} that [h] {is a good way to slow down after a busy day|teaches patience|sharpens the eye and calms the mind}",
    "{Mistakes are part of the fun|Nobody gets it right the first time|Progress can feel slow at first}, {and|but} {even experts remember their early failures|the satisfaction of a finished piece is worth it|it quickly becomes easier with practice}",
    "{Libraries|Second-hand bookshops|Evening classes} {are a good source of|offer} {cheap guides and ideas|help for those who want to learn more|a way to meet other people with the same interest}",
    "[name], {who has practiced|who took up} [h] {for [num] years|after retiring}, {says|believes} that {the best teacher is time|anyone can learn it|it has changed the way [p] spends [pos] weekends}",
]


def hobby_paragraph(entry) -> str:
    h, gear, first, club = entry
    fn, sn, (p, _o, pos) = person()
    ctx = dict(h=h, gear=gear, first=first, club=club, t=town, num=lambda: pick(NUMWORDS[2:]),
               weekday=lambda: pick(WEEKDAYS), name=f"{fn} {sn}", p=p, pos=pos)
    first_s = fill(HOBBY_T[0], **ctx)
    rest = some(HOBBY_T[1:], 3, 4)
    return paragraph([first_s] + [fill(s, **ctx) for s in rest])


MUSIC_T = [
    "[name] {was born in|grew up in} [t] {in [y]|in the [season] of [y]} and {began playing|started to play|learned} the [inst] {at the age of [age]|as a child|in a school band}",
    "{Early on|As a young musician|In those first years}, [p] {played at weddings and village dances|busked on the steps of the town hall|sang in the church choir}",
    "{[pos_cap] first collection of songs|[pos_cap] first record|A set of pieces [p] wrote in [y2]} {drew on|was inspired by|borrowed from} {the folk tunes of [region]|the sound of the sea|old hymns and work songs}",
    "{Critics|Audiences|Fellow musicians} {praised|admired|were struck by} {the warmth of [pos] playing|[pos] gift for melody|the simplicity of [pos] arrangements}",
    "{Later in life|In [pos] later years|After many years on the road}, [name_first] {returned to [t] to teach|opened a small music school|toured far beyond [region]}",
    "{Several of [pos] tunes|Many of [pos] songs|A few of [pos] pieces} are still {played at local festivals|taught to children|heard in kitchens and pubs across [region]}",
]


def music_paragraph() -> str:
    fn, sn, (p, _o, pos) = person()
    y = year(1850, 1970)
    ctx = dict(name=f"{fn} {sn}", name_first=fn, t=town(), y=y, y2=y + R.randint(18, 35), season=lambda: pick(SEASONS),
               inst=pick(["fiddle", "piano", "accordion", "cello", "guitar", "flute", "harp", "clarinet"]),
               age=pick(["six", "seven", "eight", "ten", "twelve"]), p=p, pos=pos, pos_cap=pos.capitalize(),
               region=lambda: pick(REGIONS))
    first = fill(MUSIC_T[0], **ctx)
    rest = some(MUSIC_T[1:], 3, 4)
    return paragraph([first] + [fill(s, **ctx) for s in rest])


# ---------------------------------------------------------------------------
# Assemble
# ---------------------------------------------------------------------------

def build() -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    size = 0

    def add(text: str) -> None:
        nonlocal size
        if text in seen:
            return
        seen.add(text)
        out.append(text)
        size += len(text.encode("utf-8")) + 2

    for i in range(len(SCIENCE)):
        add(science_paragraph(i))
    gens = [
        (lambda: animal_paragraph(pick(ANIMALS)), 14),
        (lambda: plant_paragraph(pick(PLANTS)), 8),
        (town_paragraph, 11),
        (history_paragraph, 11),
        (sports_paragraph, 11),
        (lambda: cooking_paragraph(pick(DISHES)), 7),
        (travel_paragraph, 10),
        (story_paragraph, 14),
        (landscape_paragraph, 8),
        (lambda: hobby_paragraph(pick(HOBBIES)), 7),
        (music_paragraph, 5),
    ]
    funcs = [g for g, _ in gens]
    weights = [w for _, w in gens]
    while size < TARGET_BYTES:
        add(R.choices(funcs, weights)[0]())
    R.shuffle(out)
    return out


def main() -> None:
    paras = build()
    OUT.write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(paras)} paragraphs)")


if __name__ == "__main__":
    main()
