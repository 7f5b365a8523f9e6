#!/usr/bin/env python3
"""Generate the messy Nimbus Drive support-ticket corpus and the eval prompts.

Outputs (next to this script)::

    support_tickets.jsonl   messy domain corpus (exact line counts in README.md)
    eval_prompts.jsonl      held-out evaluation prompts, one per intent

Rerunning reproduces both files byte for byte (fixed seed).  The mess
factory below is also used by ``tests/fixtures/messy/generate_fixture.py``.

    python examples/quickstart/data/generate_tickets.py
"""

from __future__ import annotations

import json
import random
import re
import string
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from intents import DOMAIN_KEYWORDS, INTENTS, INTENT_BY_KEY, Intent  # noqa: E402

SEED = 1337
HERE = Path(__file__).resolve().parent

# Exact number of lines of each kind in support_tickets.jsonl.
COUNTS = {
    "clean": 1090,
    "exact_duplicate": 200,
    "near_duplicate": 160,
    "pii": 160,
    "offensive": 80,
    "off_domain": 200,
    "broken": 60,
    "mojibake": 20,
    "html": 30,
}
PII_COUNTS = {"email": 40, "phone": 35, "ipv4": 25, "credit_card": 25, "iban": 15, "api_key": 20}
OFF_DOMAIN_COUNTS = {"recipe": 60, "sports": 50, "spam": 30, "crypto": 30, "misc": 30}
BROKEN_COUNTS = {"truncated_json": 20, "not_json": 15, "missing_output": 15, "empty_line": 10}
NEAR_DUP_KINDS = ("word", "punctuation", "casing", "whitespace")
GENDER_WEIGHTS = {"male": 65, "female": 25, "unspecified": 10}
CHANNEL_WEIGHTS = {"email": 45, "chat": 40, "phone": 15}

OFFENSIVE_WORDS = ["stupid", "stup1d", "idiot", "idiots", "1d10t", "1d10ts", "crap", "cr4p", "damn", "d4mn",
                   "useless", "garbage", "sucks", "dumb", "moron", "morons", "pathetic"]

KEY_FIELDS = ("id", "instruction", "input", "output", "channel", "customer_gender")

# ---------------------------------------------------------------------------
# Text building blocks
# ---------------------------------------------------------------------------

EMAIL_OPEN = ["Hello,", "Hi,", "Hi team,", "Hello Nimbus Drive support,", "Good morning,", "Dear support team,",
              "Hi there,", "Good afternoon,", "", "", ""]
EMAIL_CLOSE = ["Thanks.", "Thanks in advance.", "Kind regards.", "Any help is appreciated.", "Best regards.",
               "Thank you!", "Cheers.", "", "", ""]
CHAT_OPEN = ["hi", "hey", "hello", "hi there", "quick question:", "hey, quick one:", "", "", ""]
CHAT_CLOSE = ["thanks", "thx", "ty!", "", "", "", ""]
PHONE_OPEN = ["Caller asks:", "Customer on the phone:", "Phone call -", "Caller says:", "Customer called:", ""]

CONTEXT = {
    "account": ["I've had this account for about three years.", "I use it for work and personal stuff.",
                "I tried this on my laptop and on my phone.", "This is for my family account.",
                "I already checked the FAQ.", "I'm not very technical, sorry.", "I need this done today if possible.",
                "The web app looks different than the screenshots in your guide."],
    "billing": ["I'm on the Plus plan, billed monthly.", "I pay yearly for Pro.", "I'm on the Free plan right now.",
                "This is for our small business.", "I checked my bank app this morning.",
                "The renewal happened last week.", "I'm the only person who pays for this account.",
                "My company reimburses this, so I need it sorted."],
    "storage": ["I'm on the Free plan.", "I mostly store photos and videos.", "We're on Pro for the whole team.",
                "I just moved a lot of old projects over.", "My usage jumped overnight.",
                "I use the desktop client and the web app."],
    "files": ["I do most of this from the web app.", "I use the desktop client on Windows.", "It's in a shared folder.",
              "It's for a folder I use for work.", "I noticed this morning.", "I have a lot of old files in there.",
              "I'm on Plus if that matters."],
    "sync": ["I'm on Windows 11.", "I'm on a Mac with the latest macOS.", "This started after the last update.",
             "It worked fine until yesterday.", "I use a Mac at work and a PC at home.",
             "Restarting the computer did not help.", "My internet connection is fine otherwise.",
             "There are a lot of files in that folder."],
    "sharing": ["It's for a client project.", "I need this for a school group project.", "The folder is quite big.",
                "I'm sharing with people outside my company.", "I'm on the Plus plan.", "I do this from the web app.",
                "It's a folder of family photos."],
    "security": ["I'm a bit worried about this.", "I use the same account on three devices.",
                 "I got an email alert this morning.", "This is my work account.",
                 "I already changed my password once.", "I travel a lot for work."],
    "desktop": ["I'm on Windows 10.", "I have a MacBook Air.", "It's a new work laptop.",
                "IT gave me admin rights for this.", "I used the web app until now."],
    "mobile": ["I have an iPhone.", "I'm on Android.", "I have a Pixel phone.", "My phone is pretty new.",
               "I use the app mostly when traveling.", "I don't have much mobile data."],
    "api": ["I'm writing a small Python script.", "We use the API for nightly backups.", "This is for an internal tool.",
            "I'm calling the REST API from a cron job.", "Our integration has worked for months.",
            "I'm new to APIs."],
}
INPUTS = {
    "account": ["Plan: Free", "Plan: Plus", "Plan: Pro", "Web app, Chrome", "Web app, Firefox", "Web app, Safari",
                "Account type: personal", "Account type: team"],
    "billing": ["Plan: Plus (monthly)", "Plan: Plus (yearly)", "Plan: Pro (monthly)", "Plan: Pro (yearly)",
                "Plan: Free", "Payment method: card", "Payment method: PayPal", "Billing country: Germany",
                "Billing country: United States", "Billing country: United Kingdom"],
    "storage": ["Plan: Free, usage 4.9 GB of 5 GB", "Plan: Plus, usage 198 GB of 200 GB", "Plan: Pro",
                "Plan: Plus", "Plan: Free"],
    "files": ["Web app, Chrome", "Desktop client on Windows 11", "Desktop client on macOS 14", "Plan: Pro",
              "Plan: Plus", "Folder: Projects", "Folder: Family photos"],
    "sync": ["Desktop client 5.2 on Windows 11", "Desktop client 5.1 on macOS 14", "Desktop client 4.9 on Windows 10",
             "Desktop client 5.2 on macOS 13", "Error shown: Sync paused", "Error shown: Can't reach server",
             "Status icon: spinning"],
    "sharing": ["Plan: Plus", "Plan: Pro", "Plan: Free", "Web app, Edge", "Shared folder: Client work",
                "Shared folder: Team docs"],
    "security": ["Plan: Pro", "Plan: Plus", "Plan: Free", "Alert: New sign-in", "Web app, Chrome"],
    "desktop": ["OS: Windows 11", "OS: Windows 10", "OS: macOS 14", "OS: macOS 12", "Desktop client 4.8"],
    "mobile": ["Mobile app 3.8 on Android 14", "Mobile app 3.7 on iOS 17", "Mobile app 3.8 on iOS 17",
               "Mobile app 3.6 on Android 13"],
    "api": ["Endpoint: /v2/files/upload", "Endpoint: /v2/folders/list", "Client: Python requests",
            "Client: curl", "Endpoint: /v2/share/links"],
}
FRIENDLY_PRE = ["Thanks for reaching out. ", "Sorry for the trouble. ", "Happy to help. "]
FRIENDLY_POST = [" Let us know if that helps.", " Reply here if you need anything else."]

OFFENSIVE_PRE = [
    "This stupid app is driving me crazy.", "You idiots did it again.", "What a load of crap.", "Damn it.",
    "Your useless support never answers.", "This garbage client again.", "Nimbus Drive sucks lately.",
    "Seriously, this is so dumb.", "This stup1d app...", "are you 1d10ts serious?", "cr4p service.",
    "d4mn, not again.", "Pathetic.", "You morons broke it.", "This is crap.", "Stupid update.",
]
OFFENSIVE_POST = [
    "Fix your stupid product.", "Honestly you guys are idiots.", "What a damn waste of money.",
    "This crap needs to work.", "Useless.", "Total garbage.", "It sucks.", "Don't be morons about it.",
    "st00pid thing, damn.", "such cr4p", "u 1d10ts", "This is pathetic.",
]

# ---------------------------------------------------------------------------
# Off-domain material (no domain keywords anywhere)
# ---------------------------------------------------------------------------

RECIPES = [
    ("banana bread", "Mash three ripe bananas, mix in melted butter, sugar, an egg and flour, then bake for about an hour at 175 C."),
    ("pancakes", "Whisk flour, milk, eggs and a pinch of salt into a smooth batter and cook thin layers in a hot buttered pan."),
    ("a simple tomato sauce", "Warm olive oil with sliced garlic, add crushed tomatoes and simmer for twenty minutes, then add basil."),
    ("lentil soup", "Soften onion and carrot, add red lentils and stock, simmer until soft, and finish with lemon juice."),
    ("guacamole", "Mash ripe avocados with lime juice, salt, chopped onion, coriander and a little chili."),
    ("chocolate chip cookies", "Cream butter and sugar, beat in an egg, fold in flour and chocolate chips, and bake for ten minutes."),
    ("a vegetable curry", "Fry onions, garlic and ginger, add curry spices and vegetables, pour in coconut milk and simmer."),
    ("overnight oats", "Mix oats with milk and yogurt, add fruit and a little honey, and leave it in the fridge overnight."),
    ("roast potatoes", "Parboil the potatoes, shake them to rough the edges, and roast them in hot oil until golden."),
    ("hummus", "Blend chickpeas with tahini, lemon juice, garlic, salt and a splash of cold water until smooth."),
    ("a fruit smoothie", "Blend a banana, a handful of berries, yogurt and a little orange juice until smooth."),
    ("fried rice", "Fry cold cooked rice with garlic, peas, egg and spring onions, and season with soy sauce."),
    ("apple crumble", "Cover sliced apples with a mix of flour, butter, sugar and oats and bake until golden."),
    ("a basic omelette", "Beat two eggs, pour them into a hot buttered pan, stir gently, then fold and serve."),
    ("lemonade", "Stir the juice of four lemons with sugar syrup and cold water, then add ice and mint."),
]
RECIPE_Q = ["What's the best way to make {d}?", "Does anyone have a good recipe for {d}?", "How do I make {d} at home?",
            "Any tips for cooking {d}?", "My {d} never turns out right, what am I doing wrong?",
            "Can you give me an easy recipe for {d}?", "What do I need to make {d} for dinner tonight?"]
SPORTS_Q = [
    ("Did you watch the {t} game last night?", "Yes, what a finish! The defense was much better in the second half."),
    ("Who do you think will win the {l} this season?", "Hard to say, but the team with the deepest squad usually wins it in the end."),
    ("Is {p} the best player in the {l} right now?", "He's in great form, but a few others are close."),
    ("What time does the {t} match start on Sunday?", "Kickoff is usually in the early afternoon, check the league website."),
    ("Should {t} sack their coach after that loss?", "One bad result is not enough, give them a few more weeks."),
    ("Where can I watch the {l} final tonight?", "Most sports bars will show it, and it's on national television too."),
    ("How many goals did {p} score last season?", "Around twenty in the league, plus a few in the cup."),
]
TEAMS = ["Lakers", "Red Sox", "Arsenal", "Celtics", "Yankees", "Barcelona", "Juventus", "Packers", "Maple Leafs", "Bayern"]
LEAGUES = ["Premier League", "NBA", "Champions League", "World Series", "Super Bowl", "Tour de France", "Stanley Cup"]
PLAYERS = ["Messi", "LeBron", "Kane", "Mbappe", "Curry", "Ohtani", "Haaland", "Kelce"]
SPAM = [
    "BUY CHEAP WATCHES!!! Luxury replicas from ${p}, free shipping worldwide. Reply YES to order.",
    "Cheap watches sale: top brands {pc}% off today only!!! Limited stock, order now.",
    "Best replica watches at factory prices. Gold and silver models from ${p}. Contact our sales team now!!!",
    "Luxury watches for men and women, {pc}% discount this weekend. Fast delivery, best quality guaranteed.",
    "You have been selected to win a FREE cruise!!! Answer three questions and claim your prize worth ${p}0.",
    "Lose {n} kg in {d} days with this one weird tea. Doctors hate it. Order a trial pack now!",
    "Make ${p}0 a week working from home, no experience needed. Reply to learn more.",
]
SPAM_OUT = ["Best prices guaranteed, order today.", "Limited stock, act fast!", "Offer valid while supplies last.",
            "Reply STOP to unsubscribe.", "Hurry, the deal ends tonight."]
CRYPTO = [
    "Earn {pc}% in {d} days with {c}! Join our VIP signal group now.",
    "{c} is going to the moon!!! Buy before {mo} and become a millionaire.",
    "Guaranteed returns: invest $100 in {c} and get ${p}0 back in {d} days.",
    "New coin presale: {c}. Early investors get {pc}% bonus coins. Hurry!",
    "Double your {c} in {d} hours with our trading robot. Thousands of happy investors.",
    "Free {c} airdrop for the first {n}00 people. Send 0.1 {c} to verify your wallet.",
]
CRYPTO_OUT = ["Not financial advice, but you don't want to miss this.", "Spots are limited, join the group today.",
              "Our trading robot never sleeps.", "Thousands of investors already joined.", "Act now before it's too late."]
COINS = ["Bitcoin", "Dogecoin", "Ethereum", "MoonCoin", "SafeRocket", "ShibaGold"]
MISC = [
    ("What's the weather going to be like this weekend in {city}?", "Looks like sun on Saturday and some rain on Sunday."),
    ("Can you recommend a good hiking trail near {city}?", "There are some lovely trails in the hills just outside the city."),
    ("What movie should I watch tonight?", "If you like thrillers, try something from the nineties, they hold up well."),
    ("Any ideas for a birthday present for my mom?", "Flowers and a handwritten letter are always appreciated."),
    ("What's a good dog breed for a small apartment?", "Smaller, calmer breeds like a pug or a spaniel do well in apartments."),
    ("Which museums are worth visiting in {city}?", "The art museum and the history museum are both worth a morning."),
    ("How do I get rid of aphids on my roses?", "Spray them with soapy water or let ladybirds do the work."),
    ("What's the fastest way to learn to play guitar?", "Practice a little every day and learn songs you actually like."),
]
CITIES = ["Denver", "Lisbon", "Berlin", "Chicago", "Toronto", "Madrid", "Seattle", "Edinburgh", "Austin", "Vienna"]
NOT_JSON = [
    "ERROR 502 while exporting ticket batch {n}, retrying",
    "---- export continues below (batch {n}) ----",
    "id\tinstruction\toutput",
    "Customer hung up before the agent could answer. (ticket {n})",
    "<html><body>Ticket export page {n}</body></html>",
    "{{'id': 'tkt-{n}', 'instruction': 'single quotes are not JSON'}}",
    "WARNING: row {n} skipped by the export job",
    "ticket {n} | closed | no transcript",
]

# ---------------------------------------------------------------------------
# PII generators
# ---------------------------------------------------------------------------

FIRST = ["jane", "john", "maria", "li", "ahmed", "sofia", "tom", "anna", "lucas", "emma", "raj", "olga", "pierre",
         "chen", "kate", "mohamed", "nina", "david", "yuki", "sam"]
LAST = ["doe", "smith", "garcia", "wang", "khan", "rossi", "baker", "novak", "silva", "meyer", "patel", "ivanova",
        "dubois", "lee", "obrien", "hassan", "berg", "cohen", "tanaka", "reed"]
MAIL_DOMAINS = ["example.com", "example.org", "mail.example.net", "gmail.com", "outlook.com", "yahoo.co.uk",
                "acme-corp.com", "proton.me"]


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_complete(prefix_digits: str) -> str:
    for check in "0123456789":
        if luhn_ok(prefix_digits + check):
            return prefix_digits + check
    raise AssertionError


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    s = s[4:] + s[:4]
    n = "".join(str(int(c, 36)) for c in s)
    return int(n) % 97 == 1


def iban_make(country: str, bban: str) -> str:
    n = "".join(str(int(c, 36)) for c in (bban + country + "00"))
    check = 98 - int(n) % 97
    return f"{country}{check:02d}{bban}"


KNOWN_CARDS = ["4111 1111 1111 1111", "5555 5555 5555 4444", "3782 822463 10005", "6011 1111 1111 1117",
               "4012888888881881"]
KNOWN_IBANS = ["DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32"]
# Test-range phone numbers (555-01xx in North America, Ofcom drama ranges in the UK).
PHONE_FORMATS = ["+1 415-555-01{d2}", "(415) 555 01{d2}", "415.555.01{d2}", "+1 (212) 555-01{d2}",
                 "+44 20 7946 0{d3}", "020 7946 0{d3}", "+1 312 555 01{d2}", "+49 30 1234 5{d3}",
                 "617-555-01{d2}"]


_CARDLIKE = re.compile(r"(?:\d[ -]?){12,18}\d")


class PII:
    def __init__(self, rng: random.Random) -> None:
        self.r = rng
        self.known_cards = list(KNOWN_CARDS)  # well-known test numbers are used first
        self.known_ibans = list(KNOWN_IBANS)

    def email(self) -> str:
        r = self.r
        sep = r.choice([".", "_", "", "."])
        local = r.choice(FIRST) + sep + r.choice(LAST)
        if r.random() < 0.3:
            local += str(r.randint(1, 99))
        return f"{local}@{r.choice(MAIL_DOMAINS)}"

    def phone(self) -> str:
        r = self.r
        f = r.choice(PHONE_FORMATS)
        return f.format(d2=f"{r.randint(0, 99):02d}", d3=f"{r.randint(0, 999):03d}")

    def ipv4(self) -> str:
        r = self.r
        kind = r.random()
        if kind < 0.35:
            return f"192.168.{r.randint(0, 20)}.{r.randint(2, 254)}"
        if kind < 0.55:
            return f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(2, 254)}"
        if kind < 0.75:
            return f"203.0.113.{r.randint(2, 254)}"
        return f"198.51.100.{r.randint(2, 254)}"

    def credit_card(self) -> str:
        r = self.r
        if self.known_cards:
            return self.known_cards.pop(0)
        brand = r.choice(["visa", "mc", "amex", "disc"])
        if brand == "amex":
            body = r.choice(["34", "37"]) + "".join(r.choice(string.digits) for _ in range(12))
            num = luhn_complete(body)
            return f"{num[:4]} {num[4:10]} {num[10:]}" if r.random() < 0.7 else num
        prefix = {"visa": "4", "mc": str(r.randint(51, 55)), "disc": "6011"}[brand]
        body = prefix + "".join(r.choice(string.digits) for _ in range(15 - len(prefix)))
        num = luhn_complete(body)
        style = r.random()
        if style < 0.5:
            return " ".join(num[i:i + 4] for i in range(0, 16, 4))
        if style < 0.75:
            return "-".join(num[i:i + 4] for i in range(0, 16, 4))
        return num

    def iban(self) -> str:
        r = self.r
        if self.known_ibans:
            return self.known_ibans.pop(0)
        country = r.choice(["DE", "GB", "FR", "NL", "ES"])
        d = lambda n: "".join(r.choice(string.digits) for _ in range(n))  # noqa: E731
        bban = {
            "DE": lambda: d(18),
            "GB": lambda: r.choice(["NWBK", "BARC", "MIDL", "LOYD"]) + d(14),
            "FR": lambda: d(23),
            "NL": lambda: r.choice(["ABNA", "INGB", "RABO"]) + d(10),
            "ES": lambda: d(20),
        }[country]()
        iban = iban_make(country, bban)
        if r.random() < 0.6:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        # Avoid IBANs whose digit runs would also look like a Luhn-valid card number.
        if any(luhn_ok(m) for m in _CARDLIKE.findall(iban)):
            return self.iban()
        return iban

    def api_key(self) -> str:
        r = self.r
        if r.random() < 0.5:
            return "sk-" + "".join(r.choice(string.ascii_letters + string.digits) for _ in range(32))
        return "AKIA" + "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(16))


# kind -> (intents it is attached to or None for any, sentences inside the message, ``input`` values)
PII_TEMPLATES = {
    "email": (["reset_password", "change_email", "account_locked", "export_data", "shared_folder_missing",
               "invite_editor", "delete_account"],
              ["My account email is {v}.", "Please reply to {v}, not the address on file.",
               "The account is registered under {v}.", "I'm writing from {v}."],
              ["Account: {v}", "Reply-to: {v}", "Customer email: {v}"]),
    "phone": (None,
              ["You can call me back on {v}.", "My number is {v} if it's easier to talk.",
               "Please phone me at {v} after 5pm.", "Call me at {v}."],
              ["Callback number: {v}", "Phone: {v}"]),
    "ipv4": (["sync_not_working", "slow_sync", "suspicious_login", "rate_limit", "account_locked"],
             ["The log shows it connecting from {v}.", "My IP address is {v} if that helps.",
              "My public IP is {v}.", "Our office network is behind {v}."],
             ["Client IP: {v}", "Last sign-in from {v}"]),
    "credit_card": (["double_charge", "request_refund", "update_payment_method"],
                    ["The card is {v}.", "It was charged to my card {v}.", "Card number {v}, expiry 09/27.",
                     "My card is {v}."],
                    ["Card: {v}", "Card on file: {v}"]),
    "iban": (["request_refund", "double_charge"],
             ["Please send the money to my IBAN {v}.", "My bank account is {v}.", "You can refund to IBAN {v}."],
             ["IBAN: {v}", "Refund to: {v}"]),
    "api_key": (["create_api_token", "revoke_api_token", "rate_limit"],
                ["This is the token I'm using: {v}", "The key in my script is {v} right now.",
                 "Here is my current key: {v}"],
                ["Authorization: Bearer {v}", "Token: {v}", "Key used: {v}"]),
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

_KW = re.compile(r"(?<![\w-])(" + "|".join(re.escape(k) for k in sorted(DOMAIN_KEYWORDS, key=len, reverse=True))
                 + r")(?![\w-])", re.IGNORECASE)


def has_domain_keyword(text: str) -> bool:
    return bool(_KW.search(text))


def norm(text: str) -> str:
    """Normalization used to keep generated records distinct (case/space/punctuation-insensitive)."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


def mojibake(text: str) -> str:
    return text.encode("utf-8").decode("cp1252")


def dumps(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=False)


def record(rid, instruction, inp, output, channel, gender) -> dict:
    return {"id": rid, "instruction": instruction, "input": inp, "output": output, "channel": channel,
            "customer_gender": gender}


def weighted(r: random.Random, weights: dict[str, int]) -> str:
    return r.choices(list(weights), list(weights.values()))[0]


class TicketFactory:
    """Creates tickets of each kind.  Every created record is unique (by ``norm``)."""

    def __init__(self, seed: int, id_prefix: str = "tkt", id_width: int = 5) -> None:
        self.r = random.Random(seed)
        self.pii = PII(self.r)
        self.prefix = id_prefix
        self.width = id_width
        self.n = 0
        self.seen: set[str] = set()
        self._skel: str | None = None

    # -- basics -----------------------------------------------------------
    def next_id(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n:0{self.width}d}"

    def gender(self) -> str:
        return weighted(self.r, GENDER_WEIGHTS)

    def _question(self, intent: Intent, channel: str, core: str | None = None, before: str = "",
                  after: str = "") -> str:
        """Compose a customer message: opener, [before], question, [after], [context], closer."""
        r = self.r
        q = core or r.choice(intent.questions)
        ctx = r.choice(CONTEXT[intent.tag]) if r.random() < 0.75 else ""
        if channel == "email":
            parts = [r.choice(EMAIL_OPEN), before, q, after, ctx, r.choice(EMAIL_CLOSE)]
        elif channel == "chat":
            opener = r.choice(CHAT_OPEN)
            if r.random() < 0.4 or (opener and not opener.endswith(":")):
                q = q[0].lower() + q[1:] if not q.startswith("I ") and not q.startswith("I'") else q
                if r.random() < 0.5 and not (after or ctx):
                    q = q.rstrip(".?!")
            if opener and not opener.endswith(":"):
                opener += ","
            parts = [opener, before, q, after, ctx if r.random() < 0.8 else "", r.choice(CHAT_CLOSE)]
        else:
            parts = [r.choice(PHONE_OPEN), before, q, after, ctx]
        # The "skeleton" ignores greetings and sign-offs; two records may not share one.
        self._skel = norm(" ".join([before, q, after, ctx if ctx in parts else ""]))
        return " ".join(p for p in parts if p)

    def _output(self, intent: Intent) -> str:
        r = self.r
        out = intent.answer
        x = r.random()
        if x < 0.12:
            out = r.choice(FRIENDLY_PRE) + out
        elif x < 0.2:
            out = out + r.choice(FRIENDLY_POST)
        return out

    def _input(self, intent: Intent) -> str:
        return self.r.choice(INPUTS[intent.tag]) if self.r.random() < 0.5 else ""

    def _unique(self, make, tries: int = 500) -> dict:
        for _ in range(tries):
            self._skel = None
            rec = make()
            instr = norm(rec["instruction"])
            skel = "skel:" + (self._skel or instr)
            if instr not in self.seen and skel not in self.seen:
                self.seen.update((instr, skel))
                return rec
        raise RuntimeError("could not make a unique record")

    # -- kinds ------------------------------------------------------------
    def clean(self, intent: Intent | None = None) -> dict:
        def make():
            it = intent or self.r.choice(INTENTS)
            ch = weighted(self.r, CHANNEL_WEIGHTS)
            rec = record(None, self._question(it, ch), self._input(it), self._output(it), ch, self.gender())
            rec["_intent"] = it.key
            return rec

        rec = self._unique(make)
        rec["id"] = self.next_id()
        return rec

    def with_pii(self, kind: str) -> dict:
        intents, inline, as_input = PII_TEMPLATES[kind]

        def make():
            r = self.r
            it = INTENT_BY_KEY[r.choice(intents)] if intents else r.choice(INTENTS)
            ch = weighted(r, CHANNEL_WEIGHTS)
            v = getattr(self.pii, kind)()
            if r.random() < 0.7:
                sent = r.choice(inline).format(v=v)
                pos = {"before": sent} if r.random() < 0.35 else {"after": sent}
                instr, inp = self._question(it, ch, **pos), self._input(it)
            else:
                instr, inp = self._question(it, ch), r.choice(as_input).format(v=v)
            rec = record(None, instr, inp, self._output(it), ch, self.gender())
            rec["_intent"], rec["_pii"], rec["_pii_value"] = it.key, kind, v
            return rec

        rec = self._unique(make)
        rec["id"] = self.next_id()
        return rec

    def offensive(self) -> dict:
        def make():
            r = self.r
            it = r.choice(INTENTS)
            ch = weighted(r, CHANNEL_WEIGHTS)
            mode = r.random()
            before = r.choice(OFFENSIVE_PRE) if mode < 0.45 or mode >= 0.85 else ""
            after = r.choice(OFFENSIVE_POST) if mode >= 0.45 else ""
            q = self._question(it, ch, before=before, after=after)
            rec = record(None, q, self._input(it), self._output(it), ch, self.gender())
            rec["_intent"] = it.key
            return rec

        rec = self._unique(make)
        rec["id"] = self.next_id()
        return rec

    def off_domain(self, kind: str | None = None) -> dict:
        def make():
            r = self.r
            k = kind or r.choices(["recipe", "sports", "spam", "crypto", "misc"], [30, 25, 15, 15, 15])[0]
            fmt = dict(t=r.choice(TEAMS), l=r.choice(LEAGUES), p=r.choice(PLAYERS), city=r.choice(CITIES))
            if k == "recipe":
                d, ans = r.choice(RECIPES)
                q, a = r.choice(RECIPE_Q).format(d=d), ans
            elif k == "sports":
                qt, a = r.choice(SPORTS_Q)
                q = qt.format(**fmt)
            elif k == "spam":
                q = r.choice(SPAM).format(p=r.randint(19, 99), pc=r.choice([50, 70, 80, 90]), n=r.randint(5, 15),
                                          d=r.choice([7, 10, 14, 30]))
                a = r.choice(SPAM_OUT)
            elif k == "crypto":
                q = r.choice(CRYPTO).format(pc=r.choice([200, 500, 1000]), d=r.choice([3, 7, 10]), c=r.choice(COINS),
                                            mo=r.choice(["Friday", "the end of the month", "next week"]),
                                            p=r.randint(20, 90), n=r.randint(1, 9))
                a = r.choice(CRYPTO_OUT)
            else:
                qt, a = r.choice(MISC)
                q = qt.format(**fmt)
            pre = r.choice(["", "", "", "Hi, ", "hey ", "Hello! ", "Quick question: ", "Off topic, but "])
            if k in ("spam", "crypto"):
                pre = r.choice(["", "", "!!! ", "HOT DEAL: ", "Attention: "])
            ch = weighted(r, CHANNEL_WEIGHTS)
            self._skel = norm(re.sub(r"\d+", "0", q)) if k in ("recipe", "sports", "misc") else None
            rec = record(None, pre + q, "", a, ch, self.gender())
            rec["_offdomain"] = k
            return rec

        rec = self._unique(make)
        rec["id"] = self.next_id()
        return rec

    def mojibake_record(self) -> dict:
        def make():
            r = self.r
            it = r.choice(INTENTS)
            ch = weighted(r, CHANNEL_WEIGHTS)
            extra = r.choice(["I don't know what else to try.", "I'm working from a café today.",
                              "It worked at the café yesterday.", "I can't figure it out.",
                              "That's all I can see. Merci, Renée.", "The folder is called Résumés.",
                              "It's the folder named Café menu."])
            q = self._question(it, ch, after=extra).replace("'", "\u2019")
            rec = record(None, mojibake(q), self._input(it), self._output(it), ch, self.gender())
            rec["_intent"] = it.key
            return rec

        rec = self._unique(make)
        rec["id"] = self.next_id()
        return rec

    def html_record(self) -> dict:
        def make():
            r = self.r
            it = r.choice(INTENTS)
            q = self._question(it, "email").replace("&", "&amp;")
            sents = re.split(r"(?<=[.?!,])\s+", q)
            style = r.random()
            if style < 0.4:
                instr = "<p>" + "<br>".join(sents) + "</p>"
            elif style < 0.7:
                instr = "<div>" + " ".join(sents) + "<br/><br/>Sent from my phone &amp; tablet</div>"
            else:
                instr = "<p>" + "</p><p>".join(sents) + "</p>"
            out = self._output(it)
            if r.random() < 0.5:
                out = "<p>" + out.replace(">", "&gt;") + "</p>"
            rec = record(None, instr, self._input(it), out, "email", self.gender())
            rec["_intent"] = it.key
            return rec

        rec = self._unique(make)
        rec["id"] = self.next_id()
        return rec

    def near_duplicate(self, rec: dict, kind: str) -> dict:
        r = self.r
        text = rec["instruction"]
        new = text
        if kind == "word":
            swaps = [("How do I", "How can I"), ("How can I", "How do I"), (" my ", " the "), ("can't", "cannot"),
                     ("I'm", "I am"), ("don't", "do not"), ("want to", "need to"), ("Please", "Pls"),
                     ("please", "pls"), ("Thanks", "Thank you"), ("thanks", "thank you"), (" is ", " seems "),
                     ("Hello", "Hey"), ("Hi", "Hello"), ("really", "very")]
            r.shuffle(swaps)
            for a, b in swaps:
                if a in text:
                    new = text.replace(a, b, 1)
                    break
            else:
                new = "Hello, " + text
        elif kind == "punctuation":
            if text.endswith("?"):
                new = text[:-1] + r.choice(["??", "?!", ""])
            elif text.endswith("."):
                new = text[:-1] + r.choice(["!", "..."])
            elif "," in text:
                new = text.replace(",", "", 1)
            else:
                new = text + r.choice(["?", ".", "!"])
        elif kind == "casing":
            new = text.upper() if r.random() < 0.3 else text.lower()
            if new == text:
                new = text.upper()
        elif kind == "whitespace":
            words = text.split(" ")
            i = r.randrange(len(words))
            words[i] = words[i] + r.choice(["  ", "   ", " \t"])
            new = " ".join(words)
            if r.random() < 0.5:
                new = new + "  "
        assert new != text
        out = dict(rec)
        out["instruction"] = new
        out["id"] = self.next_id()
        out["_near_of"] = rec["id"]
        out["_near_kind"] = kind
        return out

    def broken(self, kind: str) -> str:
        r = self.r
        if kind == "empty_line":
            return ""
        if kind == "not_json":
            while True:
                line = r.choice(NOT_JSON).format(n=r.randint(100, 9999))
                if line not in self.seen:
                    self.seen.add(line)
                    return line
        rec = self.clean()
        rec = {k: v for k, v in rec.items() if not k.startswith("_")}
        if kind == "missing_output":
            del rec["output"]
            return dumps(rec)
        line = dumps(rec)
        return line[: r.randint(20, len(line) - 10)]


def strip_private(rec: dict) -> dict:
    return {k: rec[k] for k in KEY_FIELDS if k in rec}


# ---------------------------------------------------------------------------
# Corpus assembly
# ---------------------------------------------------------------------------

def build_corpus(f: TicketFactory, counts: dict, pii_counts: dict, broken_counts: dict,
                 off_domain_kinds: dict | None = None):
    """Return (lines, manifest).  ``lines`` are strings (no newline)."""
    r = f.r
    assert sum(pii_counts.values()) == counts["pii"]
    assert sum(broken_counts.values()) == counts["broken"]
    assert not off_domain_kinds or sum(off_domain_kinds.values()) == counts["off_domain"]
    items: list[tuple[str, dict | str]] = []  # (kind, record-or-raw-line)

    # Clean records: spread evenly over the intents first, then random.
    clean = [f.clean(INTENTS[i % len(INTENTS)]) for i in range(counts["clean"])]
    items += [("clean", c) for c in clean]
    for kind, n in pii_counts.items():
        items += [("pii", f.with_pii(kind)) for _ in range(n)]
    items += [("offensive", f.offensive()) for _ in range(counts["offensive"])]
    if off_domain_kinds:
        for k, n in off_domain_kinds.items():
            items += [("off_domain", f.off_domain(k)) for _ in range(n)]
    else:
        items += [("off_domain", f.off_domain()) for _ in range(counts["off_domain"])]
    items += [("mojibake", f.mojibake_record()) for _ in range(counts["mojibake"])]
    items += [("html", f.html_record()) for _ in range(counts["html"])]

    # Duplicates of clean records (disjoint pools for exact and near duplicates).
    pool = list(clean)
    r.shuffle(pool)
    n_dup, n_near = counts["exact_duplicate"], counts["near_duplicate"]
    dup_src, rest = pool[:n_dup], pool[n_dup:]
    items += [("exact_duplicate", dict(c, _dup_of=c["id"])) for c in dup_src]
    # Word edits go to longer messages so that one changed word stays a *near* duplicate.
    long_src = [c for c in rest if len(c["instruction"]) >= 60]
    short_src = [c for c in rest if len(c["instruction"]) < 60]
    for i in range(n_near):
        kind = NEAR_DUP_KINDS[i % len(NEAR_DUP_KINDS)]
        src = (long_src if kind == "word" or not short_src else short_src).pop()
        items.append(("near_duplicate", f.near_duplicate(src, kind)))
    for kind, n in broken_counts.items():
        items += [("broken:" + kind, f.broken(kind)) for _ in range(n)]

    r.shuffle(items)
    # Exact duplicates must come after their original so "first occurrence wins" is well defined.
    pos = {it["id"]: i for i, (k, it) in enumerate(items) if k == "clean"}
    for i, (k, it) in enumerate(items):
        if k == "exact_duplicate" and pos[it["id"]] > i:
            j = pos[it["id"]]
            items[i], items[j] = items[j], items[i]
            pos[it["id"]] = i

    lines, manifest = [], {"kinds": Counter(), "pii": Counter(), "near_kinds": Counter(), "broken": Counter(),
                           "off_domain": Counter(), "ids": {}}
    for kind, it in items:
        if isinstance(it, str):
            lines.append(it)
            manifest["broken"][kind.split(":", 1)[1]] += 1
            manifest["kinds"]["broken"] += 1
            continue
        lines.append(dumps(strip_private(it)))
        manifest["kinds"][kind] += 1
        manifest["ids"].setdefault(kind, []).append(it["id"])
        if kind == "pii":
            manifest["pii"][it["_pii"]] += 1
            manifest["ids"].setdefault("pii:" + it["_pii"], []).append(it["id"])
        if kind == "near_duplicate":
            manifest["near_kinds"][it["_near_kind"]] += 1
        if kind == "off_domain":
            manifest["off_domain"][it["_offdomain"]] += 1
    manifest["items"] = items
    return lines, manifest


def eval_prompts() -> list[dict]:
    return [{"prompt": it.eval, "expected": it.answer, "references": [it.answer], "tags": [it.tag]}
            for it in INTENTS]


def main() -> None:
    f = TicketFactory(SEED)
    lines, manifest = build_corpus(f, COUNTS, PII_COUNTS, BROKEN_COUNTS, OFF_DOMAIN_COUNTS)
    (HERE / "support_tickets.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with (HERE / "eval_prompts.jsonl").open("w", encoding="utf-8") as fh:
        for e in eval_prompts():
            fh.write(dumps(e) + "\n")
    print(f"support_tickets.jsonl: {len(lines)} lines")
    print(" kinds:", dict(manifest["kinds"]))
    print(" pii:", dict(manifest["pii"]))
    print(" broken:", dict(manifest["broken"]))
    print(" near-duplicate edits:", dict(manifest["near_kinds"]))
    print(" off-domain:", dict(manifest["off_domain"]))
    print(f"eval_prompts.jsonl: {len(INTENTS)} prompts")


if __name__ == "__main__":
    main()
