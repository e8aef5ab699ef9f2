"""Closed word lists: countries, first-level regions, nationalities/religions/political groups.

These are general reference lists (sovereign states, US states, UK nations, Canadian provinces,
Australian states, common demonyms and faiths); cities are left to NER, since no fixed list of
them is anywhere near complete.
"""

from __future__ import annotations

COUNTRIES: tuple[str, ...] = tuple(
    """Afghanistan|Albania|Algeria|Andorra|Angola|Antigua and Barbuda|Argentina|Armenia|Australia|Austria|Azerbaijan
    |Bahamas|Bahrain|Bangladesh|Barbados|Belarus|Belgium|Belize|Benin|Bhutan|Bolivia|Bosnia and Herzegovina|Botswana
    |Brazil|Brunei|Bulgaria|Burkina Faso|Burundi|Cabo Verde|Cape Verde|Cambodia|Cameroon|Canada|Central African Republic
    |Chad|Chile|China|Colombia|Comoros|Congo|Costa Rica|Côte d'Ivoire|Ivory Coast|Croatia|Cuba|Cyprus|Czechia
    |Czech Republic|Democratic Republic of the Congo|Denmark|Djibouti|Dominica|Dominican Republic|Ecuador|Egypt
    |El Salvador|Equatorial Guinea|Eritrea|Estonia|Eswatini|Ethiopia|Fiji|Finland|France|Gabon|Gambia|Georgia|Germany
    |Ghana|Greece|Grenada|Guatemala|Guinea|Guinea-Bissau|Guyana|Haiti|Honduras|Hungary|Iceland|India|Indonesia|Iran
    |Iraq|Ireland|Israel|Italy|Jamaica|Japan|Jordan|Kazakhstan|Kenya|Kiribati|Kosovo|Kuwait|Kyrgyzstan|Laos|Latvia
    |Lebanon|Lesotho|Liberia|Libya|Liechtenstein|Lithuania|Luxembourg|Madagascar|Malawi|Malaysia|Maldives|Mali|Malta
    |Marshall Islands|Mauritania|Mauritius|Mexico|Micronesia|Moldova|Monaco|Mongolia|Montenegro|Morocco|Mozambique
    |Myanmar|Burma|Namibia|Nauru|Nepal|Netherlands|Holland|New Zealand|Nicaragua|Niger|Nigeria|North Korea
    |North Macedonia|Norway|Oman|Pakistan|Palau|Palestine|Panama|Papua New Guinea|Paraguay|Peru|Philippines|Poland
    |Portugal|Qatar|Romania|Russia|Russian Federation|Rwanda|Saint Lucia|Samoa|San Marino|Saudi Arabia|Senegal|Serbia
    |Seychelles|Sierra Leone|Singapore|Slovakia|Slovenia|Solomon Islands|Somalia|South Africa|South Korea|South Sudan
    |Spain|Sri Lanka|Sudan|Suriname|Sweden|Switzerland|Syria|Taiwan|Tajikistan|Tanzania|Thailand|Timor-Leste|Togo
    |Tonga|Trinidad and Tobago|Tunisia|Turkey|Türkiye|Turkmenistan|Tuvalu|Uganda|Ukraine|United Arab Emirates|UAE
    |United Kingdom|UK|U.K.|Great Britain|Britain|England|Scotland|Wales|Northern Ireland|United States
    |United States of America|USA|U.S.A.|Uruguay|Uzbekistan|Vanuatu|Vatican City|Venezuela|Vietnam|Viet Nam|Yemen
    |Zambia|Zimbabwe|Hong Kong|Puerto Rico|Greenland|Scandinavia""".replace("\n", "").split("|")
)
COUNTRIES = tuple(c.strip() for c in COUNTRIES if c.strip())

REGIONS: tuple[str, ...] = tuple(
    r.strip()
    for r in """Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Hawaii|Idaho|Illinois
    |Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|Mississippi|Missouri
    |Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York State|North Carolina|North Dakota|Ohio
    |Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia
    |West Virginia|Wisconsin|Wyoming|Ontario|Quebec|Québec|British Columbia|Alberta|Manitoba|Saskatchewan|Nova Scotia
    |New Brunswick|Newfoundland|Prince Edward Island|Yukon|Nunavut|Northwest Territories|New South Wales|Victoria
    |Queensland|Tasmania|Western Australia|South Australia|Northern Territory|Bavaria|Catalonia|Andalusia|Flanders
    |Wallonia|Tuscany|Lombardy|Sicily|Sardinia|Brittany|Normandy|Provence|Yorkshire|Lancashire|Cornwall|Devon|Kent
    |Essex|Surrey|Sussex|Norfolk|Suffolk|Cumbria|Northumberland|Merseyside|Greater Manchester|West Midlands
    |East Anglia|Highlands|Midlands|Punjab|Kerala|Tamil Nadu|Gujarat|Maharashtra|Bengal|Lagos State""".replace(
        "\n", ""
    ).split("|")
    if r.strip()
)

_DEMONYMS = """Afghan|Albanian|Algerian|American|Andorran|Angolan|Argentine|Argentinian|Armenian|Australian|Austrian
|Azerbaijani|Bahamian|Bahraini|Bangladeshi|Barbadian|Belarusian|Belgian|Belizean|Beninese|Bhutanese|Bolivian|Bosnian
|Botswanan|Brazilian|British|Bruneian|Bulgarian|Burkinabe|Burmese|Burundian|Cambodian|Cameroonian|Canadian|Chadian
|Chilean|Chinese|Colombian|Congolese|Costa Rican|Croatian|Cuban|Cypriot|Czech|Danish|Djiboutian|Dominican|Dutch
|Ecuadorian|Egyptian|Emirati|English|Eritrean|Estonian|Ethiopian|Fijian|Filipino|Filipina|Finnish|French|Gabonese
|Gambian|Georgian|German|Ghanaian|Greek|Grenadian|Guatemalan|Guinean|Guyanese|Haitian|Honduran|Hungarian|Icelandic
|Indian|Indonesian|Iranian|Iraqi|Irish|Israeli|Italian|Ivorian|Jamaican|Japanese|Jordanian|Kazakh|Kenyan|Korean
|Kosovar|Kuwaiti|Kyrgyz|Lao|Laotian|Latvian|Lebanese|Liberian|Libyan|Lithuanian|Luxembourgish|Malagasy|Malawian
|Malaysian|Maldivian|Malian|Maltese|Mauritanian|Mauritian|Mexican|Moldovan|Mongolian|Montenegrin|Moroccan
|Mozambican|Namibian|Nepalese|Nepali|New Zealander|Nicaraguan|Nigerian|Nigerien|Norwegian|Omani|Pakistani
|Palestinian|Panamanian|Paraguayan|Peruvian|Polish|Portuguese|Puerto Rican|Qatari|Romanian|Russian|Rwandan
|Salvadoran|Saudi|Scottish|Senegalese|Serbian|Sierra Leonean|Singaporean|Slovak|Slovenian|Somali|South African
|Spanish|Sri Lankan|Sudanese|Surinamese|Swedish|Swiss|Syrian|Taiwanese|Tajik|Tanzanian|Thai|Togolese|Tongan
|Trinidadian|Tunisian|Turkish|Turkmen|Ugandan|Ukrainian|Uruguayan|Uzbek|Venezuelan|Vietnamese|Welsh|Yemeni|Zambian
|Zimbabwean|Kurdish|Kurd|Tamil|Sikh|Punjabi|Gujarati|Bengali|Yoruba|Igbo|Hausa|Pashtun|Hazara|Uyghur|Tibetan|Roma
|Romani|Traveller|Aboriginal|Maori|Māori|Hispanic|Latino|Latina|Latinx|Arab|Berber|Amazigh|Basque|Catalan|Flemish
|Walloon|Scandinavian|Balkan|Slavic|Caribbean|Afro-Caribbean|African-American|Asian-American"""

_FAITHS_AND_POLITICS = """Muslim|Christian|Catholic|Roman Catholic|Protestant|Anglican|Methodist|Baptist|Lutheran
|Presbyterian|Orthodox|Greek Orthodox|Russian Orthodox|Evangelical|Pentecostal|Jewish|Jew|Hindu|Buddhist|Jain|Baha'i
|Bahá'í|Jehovah's Witness|Jehovah's Witnesses|Mormon|Latter-day Saint|Quaker|Rastafarian|Sunni|Shia|Shi'a|Shiite
|Ahmadi|Ahmadiyya|Alevi|Druze|Zoroastrian|Parsi|Copt|Coptic|Yazidi|Seventh-day Adventist|Adventist|Amish|Mennonite
|Unitarian|Atheist|Agnostic|Humanist|Labour Party|Conservative Party|Liberal Democrats|Liberal Democrat|Green Party
|Scottish National Party|Plaid Cymru|Sinn Féin|Sinn Fein|Democratic Unionist Party|Reform UK|Republican Party
|Democratic Party|Republican|Democrat|Communist Party|Social Democrats|Christian Democrats|Tory|Tories"""

NRP_TERMS: tuple[str, ...] = tuple(
    t.strip() for t in (_DEMONYMS + "|" + _FAITHS_AND_POLITICS).replace("\n", "").split("|") if t.strip()
)
