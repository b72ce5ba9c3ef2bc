//! The word lists demo products are made from: a category tree whose leaves say what they
//! sell, brands per department, tags, and the phrases of descriptions.

/// What variants of a product differ in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Options {
    /// Sizes (and one colour per product).
    Sizes,
    /// Colours only.
    Colours,
}

/// A category that holds products.
pub struct Leaf {
    pub name: &'static str,
    pub slug: &'static str,
    /// SKU prefix.
    pub code: &'static str,
    pub nouns: &'static [&'static str],
    pub materials: &'static [&'static str],
    /// Base price range in whole currency units.
    pub price: (i64, i64),
    pub options: Options,
}

pub struct Branch {
    pub name: &'static str,
    pub slug: &'static str,
    pub leaves: &'static [Leaf],
}

pub struct Department {
    pub name: &'static str,
    pub slug: &'static str,
    pub branches: &'static [Branch],
    pub brands: &'static [&'static str],
    /// Closing phrases of descriptions.
    pub details: &'static [&'static str],
}

const CLOTHING_MATERIALS: &[&str] = &[
    "Organic Cotton",
    "Linen",
    "Merino Wool",
    "Recycled Polyester",
    "Denim",
    "Hemp",
];

pub const DEPARTMENTS: &[Department] = &[
    Department {
        name: "Clothing",
        slug: "clothing",
        brands: &[
            "Northwind",
            "Fjallstad",
            "Atelier Mira",
            "Harbor & Pine",
            "Kestrel",
            "Oakline",
            "Seabright",
        ],
        details: &[
            "Cut for everyday wear and easy to care for.",
            "Machine washable at 30 degrees.",
            "Made in a fair-trade certified factory.",
            "A relaxed fit that layers well.",
            "Finished with reinforced seams that last.",
        ],
        branches: &[
            Branch {
                name: "Men",
                slug: "men",
                leaves: &[
                    Leaf {
                        name: "Shirts",
                        slug: "men-shirts",
                        code: "MSH",
                        nouns: &[
                            "Oxford Shirt",
                            "Flannel Shirt",
                            "Poplin Shirt",
                            "Overshirt",
                            "Camp Collar Shirt",
                        ],
                        materials: CLOTHING_MATERIALS,
                        price: (25, 129),
                        options: Options::Sizes,
                    },
                    Leaf {
                        name: "T-Shirts",
                        slug: "men-t-shirts",
                        code: "MTS",
                        nouns: &[
                            "Crew Neck T-Shirt",
                            "Pocket Tee",
                            "Henley",
                            "Long Sleeve Tee",
                            "Polo Shirt",
                        ],
                        materials: CLOTHING_MATERIALS,
                        price: (12, 59),
                        options: Options::Sizes,
                    },
                    Leaf {
                        name: "Jackets",
                        slug: "men-jackets",
                        code: "MJK",
                        nouns: &[
                            "Leather Jacket",
                            "Bomber Jacket",
                            "Field Jacket",
                            "Rain Jacket",
                            "Quilted Vest",
                        ],
                        materials: &[
                            "Waxed Cotton",
                            "Nylon",
                            "Suede",
                            "Wool Blend",
                            "Recycled Down",
                        ],
                        price: (79, 499),
                        options: Options::Sizes,
                    },
                ],
            },
            Branch {
                name: "Women",
                slug: "women",
                leaves: &[
                    Leaf {
                        name: "Dresses",
                        slug: "women-dresses",
                        code: "WDR",
                        nouns: &[
                            "Wrap Dress",
                            "Shirt Dress",
                            "Midi Dress",
                            "Slip Dress",
                            "Knit Dress",
                        ],
                        materials: CLOTHING_MATERIALS,
                        price: (39, 189),
                        options: Options::Sizes,
                    },
                    Leaf {
                        name: "Tops",
                        slug: "women-tops",
                        code: "WTP",
                        nouns: &["Blouse", "Tank Top", "Cardigan", "Sweater", "Turtleneck"],
                        materials: CLOTHING_MATERIALS,
                        price: (19, 119),
                        options: Options::Sizes,
                    },
                    Leaf {
                        name: "Coats",
                        slug: "women-coats",
                        code: "WCT",
                        nouns: &[
                            "Trench Coat",
                            "Wool Coat",
                            "Parka",
                            "Puffer Jacket",
                            "Leather Jacket",
                        ],
                        materials: &[
                            "Wool Blend",
                            "Cashmere",
                            "Waxed Cotton",
                            "Recycled Down",
                            "Suede",
                        ],
                        price: (89, 499),
                        options: Options::Sizes,
                    },
                ],
            },
            Branch {
                name: "Accessories",
                slug: "accessories",
                leaves: &[
                    Leaf {
                        name: "Bags",
                        slug: "bags",
                        code: "BAG",
                        nouns: &[
                            "Tote Bag",
                            "Backpack",
                            "Messenger Bag",
                            "Weekender",
                            "Crossbody Bag",
                        ],
                        materials: &[
                            "Canvas",
                            "Leather",
                            "Recycled Nylon",
                            "Waxed Canvas",
                            "Cork",
                        ],
                        price: (29, 299),
                        options: Options::Colours,
                    },
                    Leaf {
                        name: "Belts",
                        slug: "belts",
                        code: "BLT",
                        nouns: &["Belt", "Braided Belt", "Dress Belt", "Webbing Belt"],
                        materials: &["Leather", "Suede", "Canvas", "Vegan Leather"],
                        price: (15, 89),
                        options: Options::Colours,
                    },
                    Leaf {
                        name: "Scarves",
                        slug: "scarves",
                        code: "SCF",
                        nouns: &["Scarf", "Wrap", "Snood", "Bandana"],
                        materials: &["Merino Wool", "Cashmere", "Silk", "Organic Cotton"],
                        price: (9, 149),
                        options: Options::Colours,
                    },
                ],
            },
        ],
    },
    Department {
        name: "Home",
        slug: "home",
        brands: &[
            "Hearthware",
            "Maison Lumen",
            "Birchwood",
            "Copperleaf",
            "Stillwater",
            "Nordhem",
        ],
        details: &[
            "Dishwasher safe.",
            "Designed in Copenhagen and built to last for years.",
            "Comes gift-boxed.",
            "Pairs well with the rest of the collection.",
            "Responsibly sourced materials throughout.",
        ],
        branches: &[
            Branch {
                name: "Kitchen",
                slug: "kitchen",
                leaves: &[
                    Leaf {
                        name: "Cookware",
                        slug: "cookware",
                        code: "CKW",
                        nouns: &["Frying Pan", "Saucepan", "Dutch Oven", "Stock Pot", "Wok"],
                        materials: &[
                            "Cast Iron",
                            "Stainless Steel",
                            "Carbon Steel",
                            "Copper",
                            "Enamelled Steel",
                        ],
                        price: (25, 349),
                        options: Options::Colours,
                    },
                    Leaf {
                        name: "Knives",
                        slug: "knives",
                        code: "KNF",
                        nouns: &[
                            "Chef Knife",
                            "Paring Knife",
                            "Bread Knife",
                            "Santoku Knife",
                            "Knife Block",
                        ],
                        materials: &[
                            "Damascus Steel",
                            "Stainless Steel",
                            "Carbon Steel",
                            "Ceramic",
                        ],
                        price: (19, 299),
                        options: Options::Colours,
                    },
                    Leaf {
                        name: "Tableware",
                        slug: "tableware",
                        code: "TBW",
                        nouns: &[
                            "Dinner Plate Set",
                            "Serving Bowl",
                            "Mug",
                            "Tumbler Set",
                            "Salad Bowl",
                        ],
                        materials: &["Stoneware", "Porcelain", "Glass", "Olive Wood", "Bamboo"],
                        price: (8, 119),
                        options: Options::Colours,
                    },
                ],
            },
            Branch {
                name: "Living",
                slug: "living",
                leaves: &[
                    Leaf {
                        name: "Lighting",
                        slug: "lighting",
                        code: "LGT",
                        nouns: &[
                            "Table Lamp",
                            "Floor Lamp",
                            "Pendant Light",
                            "Desk Lamp",
                            "Wall Light",
                        ],
                        materials: &["Brass", "Rattan", "Opal Glass", "Concrete", "Oak"],
                        price: (35, 399),
                        options: Options::Colours,
                    },
                    Leaf {
                        name: "Cushions",
                        slug: "cushions",
                        code: "CSH",
                        nouns: &[
                            "Cushion Cover",
                            "Throw Pillow",
                            "Floor Cushion",
                            "Throw Blanket",
                        ],
                        materials: &["Linen", "Velvet", "Wool", "Organic Cotton", "Boucle"],
                        price: (15, 149),
                        options: Options::Colours,
                    },
                ],
            },
        ],
    },
    Department {
        name: "Electronics",
        slug: "electronics",
        brands: &[
            "Voltaic",
            "Sonora",
            "Pixelforge",
            "Arcwave",
            "Quillon",
            "Tandem Audio",
        ],
        details: &[
            "Two-year warranty included.",
            "Charges over USB-C.",
            "Pairs over Bluetooth 5.3 in seconds.",
            "Firmware updates over the air.",
            "Ships with a braided cable and a travel pouch.",
        ],
        branches: &[
            Branch {
                name: "Audio",
                slug: "audio",
                leaves: &[
                    Leaf {
                        name: "Headphones",
                        slug: "headphones",
                        code: "HDP",
                        nouns: &[
                            "Wireless Headphones",
                            "Earbuds",
                            "Studio Headphones",
                            "Noise Cancelling Headphones",
                        ],
                        materials: &["Aluminium", "Matte", "Leather Trim", "Recycled Plastic"],
                        price: (29, 449),
                        options: Options::Colours,
                    },
                    Leaf {
                        name: "Speakers",
                        slug: "speakers",
                        code: "SPK",
                        nouns: &[
                            "Bluetooth Speaker",
                            "Bookshelf Speakers",
                            "Soundbar",
                            "Smart Speaker",
                        ],
                        materials: &["Walnut", "Fabric", "Aluminium", "Rubberised"],
                        price: (39, 499),
                        options: Options::Colours,
                    },
                ],
            },
            Branch {
                name: "Computing",
                slug: "computing",
                leaves: &[
                    Leaf {
                        name: "Keyboards",
                        slug: "keyboards",
                        code: "KBD",
                        nouns: &[
                            "Mechanical Keyboard",
                            "Wireless Keyboard",
                            "Compact Keyboard",
                            "Keycap Set",
                        ],
                        materials: &["Aluminium", "PBT", "Low Profile", "Hot-Swap"],
                        price: (25, 249),
                        options: Options::Colours,
                    },
                    Leaf {
                        name: "Mice",
                        slug: "mice",
                        code: "MSE",
                        nouns: &[
                            "Wireless Mouse",
                            "Ergonomic Mouse",
                            "Gaming Mouse",
                            "Trackball",
                            "Mouse Pad",
                        ],
                        materials: &["Lightweight", "Silent", "Rechargeable", "Vertical"],
                        price: (5, 149),
                        options: Options::Colours,
                    },
                ],
            },
        ],
    },
    Department {
        name: "Outdoors",
        slug: "outdoors",
        brands: &[
            "Ridgeline",
            "Trailhead Co",
            "Alpenglow",
            "Basecamp Supply",
            "Wayfarer",
            "Cairn",
        ],
        details: &[
            "Tested in the Alps through every season.",
            "Packs down small for travel.",
            "Waterproof seams and a lifetime repair promise.",
            "Weighs less than you would expect.",
        ],
        branches: &[Branch {
            name: "Camping",
            slug: "camping",
            leaves: &[
                Leaf {
                    name: "Tents",
                    slug: "tents",
                    code: "TNT",
                    nouns: &[
                        "Two-Person Tent",
                        "Backpacking Tent",
                        "Family Tent",
                        "Tarp Shelter",
                    ],
                    materials: &["Ultralight", "Ripstop Nylon", "Polycotton", "Silnylon"],
                    price: (59, 499),
                    options: Options::Colours,
                },
                Leaf {
                    name: "Sleeping Bags",
                    slug: "sleeping-bags",
                    code: "SLB",
                    nouns: &["Sleeping Bag", "Quilt", "Sleeping Pad", "Travel Pillow"],
                    materials: &["Down", "Synthetic", "Merino Lined", "Insulated"],
                    price: (19, 399),
                    options: Options::Colours,
                },
            ],
        }],
    },
];

pub const ADJECTIVES: &[&str] = &[
    "Classic",
    "Essential",
    "Everyday",
    "Premium",
    "Vintage",
    "Modern",
    "Heritage",
    "Signature",
    "Urban",
    "Nordic",
    "Coastal",
    "Alpine",
    "Studio",
    "Weekend",
    "Travel",
    "Compact",
    "Deluxe",
    "Minimal",
    "Rustic",
    "Artisan",
];

pub const SIZES: &[&str] = &["XS", "S", "M", "L", "XL", "XXL"];

pub const COLOURS: &[&str] = &[
    "Black", "White", "Navy", "Olive", "Sand", "Charcoal", "Rust", "Forest", "Sky Blue",
    "Burgundy", "Stone", "Ochre",
];

/// (name, slug)
pub const TAGS: &[(&str, &str)] = &[
    ("New", "new"),
    ("Sale", "sale"),
    ("Bestseller", "bestseller"),
    ("Organic", "organic"),
    ("Recycled", "recycled"),
    ("Vegan", "vegan"),
    ("Handmade", "handmade"),
    ("Eco-friendly", "eco-friendly"),
    ("Limited Edition", "limited-edition"),
    ("Gift Idea", "gift-idea"),
    ("Summer", "summer"),
    ("Winter", "winter"),
    ("Waterproof", "waterproof"),
    ("Wireless", "wireless"),
    ("Fair Trade", "fair-trade"),
    ("Made in EU", "made-in-eu"),
    ("Unisex", "unisex"),
    ("Premium", "premium"),
    ("Budget", "budget"),
    ("Bundle", "bundle"),
    ("Exclusive", "exclusive"),
    ("Travel", "travel"),
    ("Outdoor", "outdoor"),
    ("Minimalist", "minimalist"),
    ("Vintage", "vintage"),
    ("Sport", "sport"),
    ("Office", "office"),
    ("Home Office", "home-office"),
    ("Kids", "kids"),
    ("Lightweight", "lightweight"),
];

/// (code, name) of the demo warehouses.
pub const WAREHOUSES: &[(&str, &str)] = &[("BER-1", "Berlin"), ("AMS-1", "Amsterdam")];
